"""`headway dashboard`: serve the web dashboard on this machine, or point at the one the embedded instance serves.

Without ``--demo`` it prints (``--open``: opens) the link to the running embedded instance's dashboard
(``headway up`` mounts it at ``/dashboard/`` on its API port, with the instance's token for actions; with
``--read-only``, the link is to ``/dashboard-read-only/``, carries no token, and that dashboard refuses every
action). The instance serves it on its own address with its own token, so ``--host``, ``--port``, ``--token`` and
``--allow-host`` are refused there rather than ignored.
Against a cluster (``--context``/``-n``/``--kubeconfig``, ``HEADWAY_MODE=kubernetes``, or as ``kubectl headway
dashboard``) it serves the dashboard itself, over `headway.runtimes.kubernetes.dashboard_source.ClusterSource`:
every namespace, or only ``-n``'s; actions are the CLI's patches, made with the kubeconfig's credentials.
``--demo`` serves simulated rollouts (the real engine on fakes, virtual time ``--speed`` times faster than real):
the quickest way to see what the dashboard shows, and what the browser test drives. A runtime with real rollouts
serves the same app over its own `RolloutSource` (the embedded daemon mounts it; see `serve`).

Actions need a token: ``--token`` or ``HEADWAY_DASHBOARD_TOKEN``, else a fresh one is generated and printed,
inside the URL's fragment (``#token=…``) so the browser keeps it for the tab without sending it in a request line
or a log. ``--read-only`` refuses every action. Reads are answered to loopback clients only, unless they send the
token: binding ``--host 0.0.0.0`` does not open the rollouts to the network. Every request must name the server in
its ``Host`` header (a loopback name, the address it reached, ``--host`` or an ``--allow-host`` name), so a web page
elsewhere cannot read the dashboard through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from aiohttp import web
from click.core import ParameterSource

from headway.cli import kube
from headway.cli.embedded import Api, EmbeddedTarget, state_dir_option, target_for
from headway.dashboard.app import create_app, token_of
from headway.dashboard.model import SourceUnavailableError
from headway.dashboard.sim_source import SimSource, demo_rollouts
from headway.dashboard.source import RolloutSource
from headway.runtimes.embedded.state_files import DASHBOARD, READ_ONLY_DASHBOARD

if TYPE_CHECKING:  # the Kubernetes client (an extra) loads only when a command targets a cluster
    from headway.runtimes.kubernetes.operate import Target


async def serve(
    source: RolloutSource,
    *,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    announce: bool = True,
    open_browser: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Serve the dashboard over ``source`` until cancelled; prints where (with the token) once listening.

    Requests must name ``host`` or one of ``allowed_hosts`` (or a loopback name) in their ``Host`` header."""
    app = create_app(source, token=token, read_only=read_only, allowed_hosts=[host, *allowed_hosts])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {error.strerror or error} (choose another --port, or 0 for any)"
            ) from None
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/"
        if announce:
            secret = token_of(app)
            click.echo(f"Headway dashboard: {url}#token={secret}" if secret else f"Headway dashboard: {url}")
            if secret:
                click.echo(f"Actions need the token: {secret}")
            else:
                click.echo("Read-only: actions are disabled.")
            if not _loopback(host):
                click.echo("Listening beyond loopback: other machines must send the token to read anything.")
            click.echo("Press Ctrl-C to stop.")
            sys.stdout.flush()
        if open_browser:
            secret = token_of(app)
            webbrowser.open(f"{url}#token={secret}" if secret else url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _cluster(
    target: Target,
    *,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    open_browser: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Serve the cluster's rollouts; an unreachable cluster or a bad kubeconfig fails before listening."""
    operate = kube.cluster_operations()
    from headway.runtimes.kubernetes.dashboard_source import ClusterSource  # loads once operate has

    try:
        client, _, server = target.connect()
    except operate.OperationError as error:
        raise click.ClickException(str(error)) from None
    source = ClusterSource(client, namespace=target.namespace, group=target.group)
    try:
        try:
            found = await source.list_rollouts()
        except SourceUnavailableError as error:
            raise click.ClickException(str(error)) from None
        scope = f"namespace {target.namespace}" if target.namespace else "all namespaces"
        click.echo(f"Cluster {server}: {len(found)} rollout(s) in {scope}")
        await serve(
            source,
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            open_browser=open_browser,
            allowed_hosts=allowed_hosts,
        )
    finally:
        await source.close()
        await client.close()


async def _demo(
    *,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    speed: float,
    open_browser: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> None:
    source = SimSource(demo_rollouts(), speed=speed)
    await source.start()
    try:
        await serve(
            source,
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            open_browser=open_browser,
            allowed_hosts=allowed_hosts,
        )
    finally:
        await source.close()


@click.command()
@click.option("--demo", is_flag=True, help="Serve simulated rollouts (the real engine on fakes, in virtual time).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=3100, show_default=True, help="0: any free port.")
@click.option("--token", envvar="HEADWAY_DASHBOARD_TOKEN", help="Token actions need (default: a generated one).")
@click.option("--read-only", is_flag=True, help="Refuse every action (promote, abort, …).")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Another name the page may be opened by (besides loopback and --host), e.g. this machine's DNS name.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=1000),
    default=10.0,
    show_default=True,
    help="With --demo: virtual seconds per real second.",
)
@click.option("--open", "open_browser", is_flag=True, help="Also open the page in the default browser.")
@state_dir_option
@kube.cluster_options
def dashboard(
    *,
    demo: bool,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    allow_hosts: tuple[str, ...],
    speed: float,
    open_browser: bool,
    state_dir: Path,
    kube_context: str | None,
    namespace: str | None,
    kubeconfig: Path | None,
) -> None:
    """Show the web dashboard: rollouts, steps, weights over time, analysis and the judge's evidence, actions.

    Without --demo: the dashboard the running embedded instance serves (headway up), with its token;
    with --context, -n or --kubeconfig: a dashboard for the cluster's rollouts, served from here.
    """
    if token is not None and len(token) < 16:
        raise click.BadParameter("use at least 16 characters (or omit it to get a generated one)", param_hint="--token")
    target = None if demo else target_for(state_dir, kube_context, namespace, kubeconfig)
    if isinstance(target, EmbeddedTarget):
        _embedded(target.state_dir, read_only=read_only, open_browser=open_browser)
        return
    with contextlib.suppress(KeyboardInterrupt):
        if isinstance(target, kube.ClusterTarget):
            asyncio.run(
                _cluster(
                    target.target,
                    host=host,
                    port=port,
                    token=token,
                    read_only=read_only,
                    open_browser=open_browser,
                    allowed_hosts=allow_hosts,
                )
            )
        else:
            asyncio.run(
                _demo(
                    host=host,
                    port=port,
                    token=token,
                    read_only=read_only,
                    speed=speed,
                    open_browser=open_browser,
                    allowed_hosts=allow_hosts,
                )
            )


SERVED_ONLY = ("host", "port", "token", "allow_hosts")
"""Options of a dashboard this command serves itself (--demo, a cluster), which the embedded instance's has not."""


def _embedded(state_dir: Path, *, read_only: bool, open_browser: bool) -> None:
    """Print (and open) the link to the embedded instance's dashboard: with its token, or read-only without."""
    context = click.get_current_context()
    given = [name for name in SERVED_ONLY if context.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + name.replace("_", "-").removesuffix("s") for name in given)
        raise click.UsageError(
            f"{flags}: the embedded instance serves its dashboard itself, on its API address (127.0.0.1, the port "
            "of `headway up --port`) with its own token; drop them (they apply to --demo and to a cluster's "
            "dashboard, which this command serves)"
        )
    if context.get_parameter_source("token") == ParameterSource.ENVIRONMENT:
        click.echo("note: HEADWAY_DASHBOARD_TOKEN is not used: actions take the instance's own token", err=True)
    try:
        api = Api(state_dir)
    except click.ClickException as error:  # no instance: a usage matter, with both ways forward
        raise click.UsageError(f"{error.message}. Try `headway dashboard --demo` to see simulated rollouts.") from None
    if read_only:
        url = f"{api.url}{READ_ONLY_DASHBOARD}"
        click.echo(f"Headway dashboard: {url}")
        click.echo("Read-only: actions are disabled.")
    else:
        url = f"{api.url}{DASHBOARD}#token={api.token}"
        click.echo(f"Headway dashboard: {url}")
        click.echo("The token in the link (after #) lets this browser tab act; keep it private.")
    if open_browser:
        webbrowser.open(url)
