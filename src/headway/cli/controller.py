"""`headway controller`: run the Kubernetes controller (in a cluster, or against $KUBECONFIG).

The controller imports kopf and lightkube (the ``kubernetes`` extra) only when this command runs, so the rest of
the CLI stays fast and works without them. SIGTERM and Ctrl-C stop it gracefully: workers finish their pass, the
Lease is released so a standby replica takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click


@click.command()
@click.option("--namespace", "-n", default=None, help="Watch only this namespace (default: the whole cluster).")
@click.option(
    "--api-group",
    default="headway.dev",
    show_default=True,
    help="API group of the Rollout kinds; argoproj.io serves Argo Rollouts resources unchanged (drop-in mode).",
)
@click.option(
    "--server", default=None, help="API server URL without credentials (tests); default: in-cluster/kubeconfig."
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig file (default: the in-cluster account, else $KUBECONFIG or ~/.kube/config).",
)
@click.option("--context", "kube_context", default=None, help="Kubeconfig context (default: the current one).")
@click.option(
    "--metrics-port", type=int, default=8080, show_default=True, help="Port of /metrics and /healthz; 0 disables."
)
@click.option(
    "--metrics-bind",
    default="127.0.0.1",
    show_default=True,
    help="Address /metrics and /healthz listen on; 0.0.0.0 in a pod, for the probes and a scraping Service.",
)
@click.option("--lease-name", default=None, help="Leader-election Lease (default: headway-controller, per API group).")
@click.option("--lease-namespace", default="default", show_default=True, help="Namespace of the leader-election Lease.")
@click.option("--no-leader-election", is_flag=True, help="Act without a Lease (only one replica may run).")
@click.option(
    "--notify",
    "notify_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Deliver the Rollouts' events to the webhooks in this file (the format of `headway up --notify`).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every pass.")
def controller(
    *,
    namespace: str | None,
    api_group: str,
    server: str | None,
    kubeconfig: Path | None,
    kube_context: str | None,
    metrics_port: int,
    metrics_bind: str,
    lease_name: str | None,
    lease_namespace: str,
    no_leader_election: bool,
    notify_file: Path | None,
    verbose: bool,
) -> None:
    """Reconcile Rollouts on a Kubernetes cluster."""
    from headway.cli.kube import KUBERNETES_EXTRA, checked_namespace

    if namespace is not None:
        checked_namespace(namespace)
    checked_namespace(lease_namespace, "--lease-namespace")
    try:
        from headway.bootstrap.kubernetes import build_controller, load_adapters
        from headway.runtimes.kubernetes.controller import ControllerConfig
    except ImportError as error:  # the kubernetes extra is not installed
        raise click.ClickException(
            f"the controller needs the Kubernetes client ({KUBERNETES_EXTRA}): {error}"
        ) from error
    from headway.engine.modes import RouterUnavailableError
    from headway.engine.notify import NotifyConfig

    try:  # before anything starts: a router the mode lists but cannot build stops the start, named
        load_adapters()
    except RouterUnavailableError as error:
        raise click.ClickException(f"the controller cannot start: {error}") from error
    try:
        notify = NotifyConfig.load(notify_file) if notify_file is not None else None
    except ValueError as error:  # the field named: silently not notifying is found out only when an alert is missed
        raise click.ClickException(f"--notify: {error}") from error
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = ControllerConfig(
        api_group=api_group,
        namespace=namespace,
        server=server,
        kubeconfig=kubeconfig,
        context=kube_context,
        leader_election=not no_leader_election,
        lease_name=lease_name,
        lease_namespace=lease_namespace,
        metrics_port=metrics_port or None,
        metrics_host=metrics_bind,
        notify=notify,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        instance = build_controller(config)
        try:
            await instance.run(stop=stop)
        finally:
            await instance.client.close()

    asyncio.run(run())
