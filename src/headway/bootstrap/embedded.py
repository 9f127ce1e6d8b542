"""Embedded mode, wired: everything under one state directory, built from the registry's embedded entry.

- status and applied manifests in SQLite (`headway.stores.sqlite`), which also holds the directory's lock, so a
  second instance on the same directory refuses to start instead of fighting the first;
- revisions as local processes (`headway.platforms.local`), which survive the controlling process;
- one weighted proxy process per rollout routed through it (``trafficRouting.plugins["headway.dev/proxy"]``),
  started in its own session so it survives too, adopted again after a restart
  (`headway.runtimes.embedded.proxies.Proxies`), driven by the router the registry builds on them; the runner
  keeps each proxy's backends equal to the platform's ready replicas
  (`headway.runtimes.embedded.backends.BackendSync`);
- the metric providers the registry lists (`headway.runtimes.embedded.analysis`), its gate backend and, when
  configured, notifications;
- the runner (`headway.runtimes.embedded.runner`), run with the local API by
  `headway.runtimes.embedded.service.Embedded`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from headway.core.errors import PermanentError
from headway.engine import modes
from headway.engine.notify import Notifier, NotifyConfig
from headway.engine.reconcile import Engine, PassResult
from headway.platforms.local import LocalPlatform
from headway.providers.base import MetricProvider
from headway.providers.registry import UnknownProviderError, default_registry
from headway.runtimes.embedded.analysis import EmbeddedExecutor, RolloutProxyProvider, build_analysis
from headway.runtimes.embedded.backends import BackendSync
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.embedded.runner import Hook, Runner
from headway.runtimes.embedded.service import Embedded
from headway.stores.sqlite import SqliteStore

DEFAULT_RESYNC = 1.0
REGISTRY = modes.EMBEDDED


def providers(proxies: Proxies, owner: Callable[[str], str | None]) -> dict[str, MetricProvider]:
    """The metric providers the registry lists for embedded mode, each built once; ``proxy`` reads the counters
    of the proxy of the rollout that owns the run (``owner``). A listed type nobody can build stops the start."""
    table = default_registry()
    built: dict[str, MetricProvider] = {}
    for kind in sorted(REGISTRY.providers):
        try:
            built[kind] = RolloutProxyProvider(proxies, owner) if kind == RolloutProxyProvider.type else table.get(kind)
        except UnknownProviderError as error:  # admission lets this type through: refuse to start, never skip it
            raise PermanentError(f"the {REGISTRY.mode} mode lists the {kind!r} metric provider: {error}") from error
    return built


def wire_analysis(store: SqliteStore, proxies: Proxies, state_dir: Path) -> tuple[EmbeddedExecutor, Hook]:
    """The analysis executor and its runner hook, over the registry's providers."""
    built: list[EmbeddedExecutor] = []

    def owner(run_name: str) -> str | None:
        return built[0].owner(run_name) if built else None

    executor, tick = build_analysis(store, state_dir, providers(proxies, owner))
    built.append(executor)
    return executor, tick


def build_embedded(
    state_dir: Path | str,
    *,
    resync: float = DEFAULT_RESYNC,
    on_pass: Callable[[str, PassResult], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    notify: NotifyConfig | None = None,
) -> Embedded:
    """Wire embedded mode on ``state_dir`` (call inside a running event loop); StateLockedError if taken.

    ``notify`` delivers the rollouts' events to webhooks; gate webhooks (``spec.webhooks``) are called by the
    registry's gate backend.
    """
    path = Path(state_dir).resolve()
    store = SqliteStore(path)
    loop = asyncio.get_running_loop()
    holder: dict[str, Runner] = {}

    def backends_changed(_hash: str, _backends: list[tuple[str, int]]) -> None:
        # On the platform's supervisor thread: hand over to the loop, which pushes backends and reconciles.
        loop.call_soon_threadsafe(lambda: holder["runner"].wake() if "runner" in holder else None)

    try:
        proxies = Proxies(path)
        (name,) = REGISTRY.routers  # one router drives every rollout (the mode drives one router per rollout)
        router = REGISTRY.router(name, proxies)  # RouterUnavailableError (a PermanentError) stops the start
        executor, analysis_tick = wire_analysis(store, proxies, path)  # so does a provider it cannot build
        platform = LocalPlatform(path, on_backends_changed=backends_changed, environ=_replica_environ())
    except BaseException:
        store.close()  # the directory's lock too: a failed start leaves it free for the next
        raise
    gates = REGISTRY.gates() if REGISTRY.gates is not None else None
    engine = Engine(platform=platform, router=router, runs=executor, store=store, gates=gates)
    notifier = Notifier(notify) if notify is not None and notify.sinks else None
    backends = BackendSync(  # its hooks are the runner's, built next: `holder` is read when they run
        platform,
        proxies,
        rollouts=lambda: holder["runner"].rollouts(),  # noqa: PLW0108 - late: the runner does not exist yet
        record=lambda *event: holder["runner"].record(*event),  # noqa: PLW0108 - late, as above
    )
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    runner = Runner(
        engine,
        store,
        hooks=[backends.sync, analysis_tick],
        after=[backends.repair],
        resync=resync,
        on_pass=on_pass,
        notify=(lambda r, result, now: notifier.notify_pass(r, result, now=now)) if notifier is not None else None,
        **extra,
    )
    holder["runner"] = runner
    return Embedded(
        state_dir=path,
        store=store,
        platform=platform,
        proxies=proxies,
        runner=runner,
        runs=executor,
        gates=gates,
        notifier=notifier,
    )


def _replica_environ() -> dict[str, str]:
    """What replicas inherit: our environment plus ``HEADWAY_PYTHON``, so a manifest can run a Python app with
    the interpreter (and virtualenv) Headway runs on: ``command: ["$(HEADWAY_PYTHON)", "app.py"]``."""
    return {**os.environ, "HEADWAY_PYTHON": sys.executable}
