"""The rollout commands against a Kubernetes cluster: the mode switch and the cluster side of each command.

The same `headway get/list/promote/...` commands serve both modes; `cluster_options` adds kubectl's flags
(``--context``, ``-n/--namespace``, ``--kubeconfig``) and `target_of` decides the mode: any of those flags, or
``HEADWAY_MODE=kubernetes``, or being run as the kubectl plugin ``kubectl-headway`` (so ``kubectl headway promote
web`` works with no flag) targets the cluster; otherwise the embedded instance. ``HEADWAY_MODE=embedded`` makes the
plugin talk to the local instance. Asking for both (a cluster flag under ``HEADWAY_MODE=embedded``, or a typed
``--state-dir`` on a command that targets a cluster) is a usage error. The work is done by
`headway.runtimes.kubernetes.operate`; this module prints.

``get rollout --watch`` / ``list rollouts --watch`` (and ``status``) keep one connection and re-read the view
every `WATCH_INTERVAL` seconds (`operate.follow`), drawing it again only when it changed: in place on a terminal,
as one full frame per change in a pipe, so a log of the watch is the rollout's history.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.live import Live

from headway.cli import views
from headway.dashboard.model import RolloutView
from headway.spec import names

if TYPE_CHECKING:
    from headway.runtimes.kubernetes.operate import Cluster, Target

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V", RolloutView, list[RolloutView])
PLUGIN_NAME = "kubectl-headway"
SETTLED = ("Healthy", "Degraded", "Paused")


KUBERNETES_EXTRA = "pip install 'headway[kubernetes]'"


def cluster_operations() -> ModuleType:
    """`headway.runtimes.kubernetes.operate`, imported when a command targets a cluster: the Kubernetes client
    is not loaded for an embedded-mode command, and a base install (without the ``kubernetes`` extra) gets a
    sentence saying what to install instead of a traceback."""
    try:
        from headway.runtimes.kubernetes import operate
    except ImportError as error:
        message = f"acting on a cluster needs the Kubernetes client ({KUBERNETES_EXTRA}): {error}"
        raise click.ClickException(message) from None
    return operate


API_GROUP_KEY = "headway.api_group"
"""Where ``--api-group`` is kept in click's context (read by `target_of`, so command signatures stay as they are)."""


def _keep_api_group(context: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None and value not in ("headway.dev", "argoproj.io"):
        raise click.BadParameter(f"must be headway.dev or argoproj.io, got {value!r}", param_hint="--api-group")
    context.meta[API_GROUP_KEY] = value


def cluster_options(function: F) -> F:
    """kubectl's targeting flags; giving any of them means "against the cluster"."""
    function = click.option(
        "--api-group",
        default=None,
        envvar="HEADWAY_API_GROUP",
        expose_value=False,
        callback=_keep_api_group,
        help="API group of the Rollouts: headway.dev or argoproj.io (default: what the cluster serves).",
    )(function)
    function = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Kubeconfig file (cluster mode).",
    )(function)
    function = click.option("-n", "--namespace", default=None, help="Namespace (cluster mode).")(function)
    context = click.option("--context", "kube_context", default=None, help="Kubeconfig context: target a cluster.")
    return context(function)


def target_of(
    kube_context: str | None, namespace: str | None, kubeconfig: Path | None, *, state_dir_given: bool = False
) -> Target | None:
    """The cluster to talk to, or None for the embedded instance (see the module docstring).

    Asking for both is a usage error, never a guess: a cluster flag with ``HEADWAY_MODE=embedded``, or
    ``--state-dir`` given on the command line (``state_dir_given``) to a command that targets a cluster. Either
    guess would act (promote, abort...) on rollouts the user did not name."""
    mode = os.environ.get("HEADWAY_MODE", "").lower()
    if mode not in ("", "kubernetes", "embedded"):
        raise click.BadParameter(
            f"HEADWAY_MODE must be kubernetes or embedded, got {mode!r}", param_hint="HEADWAY_MODE"
        )
    flags = ", ".join(
        flag
        for flag, value in (("--context", kube_context), ("--namespace", namespace), ("--kubeconfig", kubeconfig))
        if value is not None
    )
    if mode == "embedded":
        if flags:
            raise click.BadParameter(
                f"it is embedded (the local instance), but {flags} targets a cluster: unset HEADWAY_MODE or drop "
                f"{flags}",
                param_hint="HEADWAY_MODE",
            )
        return None
    if namespace is not None:
        checked_namespace(namespace)
    if flags or mode == "kubernetes" or _as_plugin():
        if state_dir_given:
            why = flags or ("HEADWAY_MODE=kubernetes" if mode == "kubernetes" else f"running as {PLUGIN_NAME}")
            raise click.BadParameter(
                f"it names the local (embedded) instance, but {why} targets a cluster: give one or the other "
                "(HEADWAY_MODE=embedded makes the kubectl plugin act on the local instance)",
                param_hint="--state-dir",
            )
        context = click.get_current_context(silent=True)
        group = context.meta.get(API_GROUP_KEY) if context is not None else None
        target: Target = cluster_operations().Target(
            context=kube_context, namespace=namespace, kubeconfig=kubeconfig, group=group
        )
        return target
    return None


def checked_namespace(value: str, param_hint: str = "'-n' / '--namespace'") -> str:
    """A namespace option checked as Kubernetes checks namespaces (a DNS-1123 label): a usage error otherwise."""
    try:
        return names.check_namespace(value, param_hint)
    except names.InvalidNameError as error:
        raise click.BadParameter(
            f"{error.value!r} is not a valid namespace: {error.problem}", param_hint=param_hint
        ) from None


def _as_plugin() -> bool:
    context = click.get_current_context(silent=True)
    root = context.find_root().info_name if context is not None else None
    return PLUGIN_NAME in (root, Path(sys.argv[0]).name)


def call(target: Target, operation: Callable[[Cluster], Any]) -> Any:
    operate = cluster_operations()
    try:
        return operate.run(target, operation)
    except operate.OperationError as error:
        raise click.ClickException(str(error)) from None


def get_rollout(
    target: Target,
    name: str | None,
    output: str,
    all_namespaces: bool = False,
    *,
    watch: bool = False,
    watch_timeout: float = 0.0,
) -> None:
    if name is None:
        list_rollouts(target, output, all_namespaces, watch=watch, watch_timeout=watch_timeout)
        return
    if watch:
        _watch(target, lambda cluster: cluster.view(name), views.rollout_renderable, output, watch_timeout)
        return
    view = call(target, lambda cluster: cluster.view(name))
    if output != "text":
        click.echo(views.dump(view, output), nl=False)
        return
    views.plain_console(width=120).print(views.rollout_renderable(view))


def list_rollouts(
    target: Target, output: str, all_namespaces: bool, *, watch: bool = False, watch_timeout: float = 0.0
) -> None:
    if watch:

        def table(found: list[RolloutView]) -> RenderableType:
            return views.list_renderable(found, all_namespaces=all_namespaces)

        _watch(target, lambda cluster: cluster.views(all_namespaces=all_namespaces), table, output, watch_timeout)
        return
    found = call(target, lambda cluster: cluster.views(all_namespaces=all_namespaces))
    if output != "text":
        click.echo(views.dump(found, output), nl=False)
        return
    views.plain_console(width=120).print(views.list_renderable(found, all_namespaces=all_namespaces))


def _watch(
    target: Target,
    read: Callable[[Cluster], Awaitable[V]],
    render: Callable[[V], RenderableType],
    output: str,
    timeout: float,
) -> None:
    """Redraw the view each time it changes until Ctrl-C (or ``timeout`` seconds): in place on a terminal (rich
    Live), else one full frame per change (a pipe or a log keeps the history; ``-o json|yaml``: one document)."""
    console = Console() if sys.stdout.isatty() else views.plain_console(width=120)
    operate = cluster_operations()

    def frames(cluster: Cluster) -> AsyncIterator[V]:
        found: AsyncIterator[V] = operate.follow(lambda: read(cluster), interval=operate.WATCH_INTERVAL)
        return found

    async def main() -> None:
        async with operate.connected(target) as cluster, asyncio.timeout(timeout or None):
            if output != "text":
                async for data in frames(cluster):
                    click.echo(views.dump(data, output), nl=False)
            elif console.is_terminal:
                with Live(console=console, auto_refresh=False, redirect_stdout=False) as live:
                    async for data in frames(cluster):
                        live.update(render(data), refresh=True)
            else:
                first = True
                async for data in frames(cluster):
                    if not first:
                        console.print("")
                    console.print(render(data))
                    first = False

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, TimeoutError):
        return  # Ctrl-C or --watch-timeout: the last frame stays on screen
    except operate.OperationError as error:
        raise click.ClickException(str(error)) from None


def control(target: Target, verb: str, name: str, **options: Any) -> None:
    """Apply one control (``promote``, ``abort``, ...) and say what it did."""
    view = call(target, lambda cluster: getattr(cluster, verb.replace("-", "_"))(name, **options))
    if verb == "undo":
        click.echo(f"rollout {name}: undo requested, template image now {view.current_image}")
    elif verb == "set_image":
        click.echo(f"rollout {name}: {options['container']} set to {options['image']}")
    else:
        full = "full " if options.get("full") else ""
        click.echo(f"rollout {name}: {full}{verb} requested ({view.phase or 'Pending'})")


def status(target: Target, name: str, timeout: float | None) -> None:
    """Follow the rollout until it settles (the controller's new status), printing each new phase, over one
    connection; exit 1 if Degraded or on timeout."""
    last: list[RolloutView] = []
    operate = cluster_operations()

    async def main() -> RolloutView:
        async with operate.connected(target) as cluster, asyncio.timeout(timeout):
            async for view in operate.follow(lambda: cluster.view(name), interval=operate.WATCH_INTERVAL):
                if not last or _line(view) != _line(last[-1]):
                    click.echo(_line(view))
                last[:] = [view]
                if view.phase in SETTLED and view.current_hash is not None:
                    settled: RolloutView = view
                    return settled
        raise AssertionError("follow never ends")

    try:
        view = asyncio.run(main())
    except TimeoutError:
        phase = (last[-1].phase if last else None) or "Pending"
        raise click.ClickException(f"rollout {name} is still {phase} after the timeout") from None
    except operate.OperationError as error:
        raise click.ClickException(str(error)) from None
    if view.phase == "Degraded":
        sys.exit(1)


def _line(view: RolloutView) -> str:
    return f"{view.phase or 'Pending'}" + (f" - {view.message}" if view.message else "")


class ClusterTarget:
    """The rollout commands against a cluster (`headway.cli.embedded.RolloutTarget`, the cluster side)."""

    cluster = True

    def __init__(self, target: Target) -> None:
        self.target = target

    def control(self, verb: str, name: str, **options: Any) -> None:
        control(self.target, verb, name, **options)

    def get_rollout(self, name: str | None, output: str, *, watch: bool, watch_timeout: float) -> None:
        get_rollout(self.target, name, output, watch=watch, watch_timeout=watch_timeout)

    def list_rollouts(self, output: str, all_namespaces: bool, *, watch: bool, watch_timeout: float) -> None:
        list_rollouts(self.target, output, all_namespaces, watch=watch, watch_timeout=watch_timeout)

    def status(self, name: str, timeout: float | None) -> None:
        status(self.target, name, timeout)
