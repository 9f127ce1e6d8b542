"""The composition root: the only place that wires a mode's adapters into the engine and its runtime.

Embedded mode, on one machine, with everything under one state directory:

- status and applied manifests in SQLite (`headway.stores.sqlite`), which also holds the directory's lock, so a
  second instance on the same directory refuses to start instead of fighting the first;
- revisions as local processes (`headway.platforms.local`), which survive the controlling process;
- one weighted proxy process per rollout routed through it (``trafficRouting.plugins["headway.dev/proxy"]``),
  started in its own session so it survives too, adopted again after a restart
  (`headway.runtimes.embedded.proxies.Proxies`), driven by
  `headway.routers.proxy.ProxyRouter`; the runner keeps each proxy's backends equal to the platform's ready
  replicas (`Proxies.sync`);
- the runner (`headway.runtimes.embedded.runner`) and the local API (`headway.runtimes.embedded.daemon`).

``python -m headway.bootstrap --state-dir DIR --port P`` runs the embedded daemon (``headway up`` starts it
detached). It refuses to start on lost state (`lost_state`): a database that is missing, empty or without the
rollouts whose proxy or replicas still run. Taking that as a fresh start would deploy over a running release at
full weight; ``--adopt`` keeps them serving (each rollout's serving revision becomes its stable one, see
`headway.runtimes.embedded.runner.Runner.adopt_serving`) and ``--reset`` stops them first (`reset`).
SIGTERM or SIGINT stops the controller only and leaves the data plane serving, like a crash would;
``POST /api/v1/shutdown`` (``headway down``) stops everything and forgets the rollouts (`forget`); `teardown`
does the same for what a dead daemon left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from headway.core.errors import PermanentError, TemporaryError
from headway.dashboard.app import create_app
from headway.engine import admission
from headway.engine.analysis import TURN_WAIT, AnalysisExecutor, EnvironmentSecrets
from headway.engine.gates import HttpGates
from headway.engine.notify import Notifier, NotifyConfig
from headway.engine.reconcile import Engine, PassResult
from headway.platforms.local import LocalPlatform
from headway.platforms.local_state import STATE_FILE as PLATFORM_FILE
from headway.platforms.local_state import running_replicas
from headway.private_files import private_dir, write_private_atomically
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.proxy import ProxyProvider
from headway.providers.registry import default_registry
from headway.routers.proxy import ProxyRouter
from headway.runtimes.embedded import gitsync
from headway.runtimes.embedded.daemon import Daemon, new_token
from headway.runtimes.embedded.dashboard_source import RunnerSource
from headway.runtimes.embedded.proxies import Proxies, is_proxy, uses_proxy
from headway.runtimes.embedded.proxy_state import load_state
from headway.runtimes.embedded.runner import Hook, Runner, SteadyClock, put
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, GIT_CONFIG_FILE, GIT_STATE_FILE, TOKEN_FILE
from headway.spec.analysis import (
    AnalysisRun,
    AnalysisRunSpec,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    Metric,
)
from headway.spec.load import Document
from headway.spec.rollout import Rollout, rollout_key
from headway.stores.sqlite import DB_NAME, SqliteStore, StateError, StateLock

log = logging.getLogger(__name__)
TemplateT = TypeVar("TemplateT", AnalysisTemplate, ClusterAnalysisTemplate)

DEFAULT_RESYNC = 1.0
GIT_DIR = "git"
"""The private copy of the followed repository (fetched commits only)."""


# --- analysis -----------------------------------------------------------------------------------------------


class StoredTemplates(Mapping[str, TemplateT]):
    """A live, read-only view of the applied templates of one kind, keyed ``namespace/name`` (or by bare name).

    Live because templates applied after startup must be found by the next run; parsed on each lookup, which
    happens only when a run starts.
    """

    def __init__(self, store: SqliteStore, kind: str, model: type[TemplateT]) -> None:
        self.store = store
        self.kind = kind
        self.model: type[TemplateT] = model

    def __getitem__(self, key: str) -> TemplateT:
        data, _ = self.store.get_document(self.kind, key)
        if data is None and "/" not in key:
            data = next((doc for k, doc, _ in self.store.list_documents(self.kind) if k.endswith("/" + key)), None)
        if data is None:
            raise KeyError(key)
        model: TemplateT = self.model.model_validate(data)
        return model

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, _, _ in self.store.list_documents(self.kind)])

    def __len__(self) -> int:
        return len(self.store.list_documents(self.kind))


class RolloutProxyProvider:
    """The ``proxy`` metric provider aimed at the proxy of the rollout that owns the run being measured.

    Proxies listen on ports chosen at start, so a manifest cannot name the admin address; the run's owner
    (recorded by the executor) tells which proxy to ask. An explicit ``address`` in the metric still wins.
    """

    type: ClassVar[str] = ProxyProvider.type

    def __init__(self, proxies: Proxies, owner: Callable[[str], str | None]) -> None:
        self.proxies = proxies
        self.owner = owner

    def _provider(self, context: MeasureContext) -> ProxyProvider:
        key = self.owner(context.run_name)
        proxy = self.proxies.get(key) if key is not None else None
        address = proxy.admin_url if proxy is not None else None
        return ProxyProvider(default_address=address, token=self.proxies.token)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        return await self._provider(context).start(metric, context)

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        return await self._provider(context).poll(metric, pending, context)

    async def cancel(self, metric: Metric, pending: str) -> None:
        """The proxy provider finishes in start: nothing to cancel."""


class EmbeddedExecutor(AnalysisExecutor):
    """The executor, refusing at start a run this mode cannot measure: its templates were applied before the
    mode checked them at apply (`headway.engine.admission`), so the run is Error at once with the reason,
    instead of erring measurement after measurement until the error limit."""

    def start_problem(self, spec: AnalysisRunSpec) -> str | None:
        problem = super().start_problem(spec)
        if problem is None:  # every provider is one this executor can build (tests register their own)
            return None
        return admission.run_problem(spec, admission.Mode.EMBEDDED) or problem  # the mode's reason reads better


ANALYSIS_RUN = "AnalysisRun"


def build_analysis(store: SqliteStore, proxies: Proxies, state_dir: Path) -> tuple[AnalysisExecutor, Hook]:
    """The in-process analysis executor over the applied templates, and the hook that measures and persists runs.

    Runs are saved as documents after every tick that changed them and loaded back at start, so a controller
    killed mid-analysis resumes the same run with the measurements it had. Each run is measured in its own task
    and saved on its own: one that hangs (until its provider's timeout), crashes or cannot be saved never keeps
    the others (another rollout's verdict) from being measured and saved, nor the runner's turn waiting longer
    than `TURN_WAIT`; a saved run that no longer reads back is held as an Error run (its rollout aborts) instead
    of stopping startup.
    """
    registry = default_registry()
    providers: dict[str, MetricProvider] = {kind: registry.get(kind) for kind in registry.known()}
    executor = EmbeddedExecutor(
        templates=StoredTemplates(store, "AnalysisTemplate", AnalysisTemplate),
        cluster_templates=StoredTemplates(store, "ClusterAnalysisTemplate", ClusterAnalysisTemplate),
        providers=providers,
        secrets=EnvironmentSecrets(directory=state_dir / "secrets"),
    )

    def owner(run_name: str) -> str | None:
        held = executor.runs.get(run_name)
        return held.rollout if held is not None else None

    providers[RolloutProxyProvider.type] = RolloutProxyProvider(proxies, owner)
    saved: dict[str, AnalysisRun] = {}
    for key, data, _ in store.list_documents(ANALYSIS_RUN):
        try:
            run = AnalysisRun.model_validate(data)
        except ValueError as error:
            log.error("%s: saved analysis run %s is not readable; holding it as Error: %s", store.path, key, error)
            run = executor.load_unreadable(key, data, f"the saved run is not readable: {error}")
        else:
            executor.load(run)
        saved[key] = run  # an unreadable one is not written back: its document stays as it was, for a human

    measuring: dict[str, asyncio.Task[None]] = {}

    async def tick(now: datetime) -> None:
        started: list[asyncio.Task[None]] = []
        for name in list(executor.runs):
            run = executor.run(name)
            task = measuring.get(name)
            finished = run is not None and run.status is not None and run.status.phase.completed
            if not finished and (task is None or task.done()):
                measuring[name] = asyncio.create_task(executor.advance(name, now), name=f"analysis run {name}")
                started.append(measuring[name])
        if started:
            # what this turn started, briefly; a run still measuring after that is saved in a later turn
            await asyncio.wait(started, timeout=TURN_WAIT)
        for name, task in list(measuring.items()):
            if task.done():
                del measuring[name]
                if not task.cancelled() and task.exception() is not None:  # `advance` never raises; just in case
                    log.error("measuring analysis run %s failed", name, exc_info=task.exception())
        for name in list(executor.runs):
            try:
                run = executor.run(name)
                if run is not None and saved.get(name) != run:
                    put(store, ANALYSIS_RUN, name, run.model_dump(by_alias=True, mode="json", exclude_none=True))
                    saved[name] = run
            except Exception:  # this run is saved again next turn; the others are saved now
                log.exception("saving analysis run %s failed", name)

    return executor, tick


# --- the embedded runtime ------------------------------------------------------------------------------------


@dataclass
class Embedded:
    """Everything embedded mode runs in the controlling process, wired; `serve` runs it until stopped."""

    state_dir: Path
    store: SqliteStore
    platform: LocalPlatform
    proxies: Proxies
    runner: Runner
    runs: AnalysisExecutor | None = None
    gates: HttpGates | None = None
    notifier: Notifier | None = None
    token: str = ""
    url: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _teardown: bool = False
    _git_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _git: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.runner.serving is None:
            self.runner.serving = self.routed_stable

    def routed_stable(self, rollout: Rollout) -> str | None:
        """The revision the rollout's proxy routes as stable, from the state file it keeps (None: unknown)."""
        path = self.proxies.dir / f"{rollout_key(rollout).replace('/', '_')}.state.json"
        try:
            state = load_state(path)
        except (OSError, ValueError):
            return None
        if state.stable is not None:
            return state.stable
        return max(state.weights, key=lambda hash: state.weights[hash]) if state.weights else None

    async def start(self, port: int = 0) -> str:
        """Serve the API on 127.0.0.1:``port`` and publish the endpoint and token in the state directory."""
        self.token = new_token(self.state_dir)
        if self.notifier is not None:
            await self.notifier.start()
        source = RunnerSource(self.runner, runs=self.runs.run if self.runs is not None else None)
        self.daemon = Daemon(
            self.runner,
            token=self.token,
            on_shutdown=lambda: self.stop(teardown=True),
            describe=self.describe,
            dashboard=create_app(source, token=self.token),
            read_only_dashboard=create_app(source, read_only=True),
        )
        self.url = await self.daemon.start("127.0.0.1", port)
        write_private_atomically(self.state_dir / ENDPOINT_FILE, json.dumps({"url": self.url, "pid": os.getpid()}))
        self._loop = asyncio.create_task(self.runner.run(), name="headway-runner")
        return self.url

    def sync_git(self, config: gitsync.GitConfig) -> gitsync.GitSync:
        """Apply every new commit of ``config``'s branch from now on (GitOps); stops with `close`."""
        loop = asyncio.get_running_loop()

        def apply(documents: Sequence[Document], source: str) -> list[str]:
            # Called from the sync's thread: the apply itself runs on the runner's worker, after any pass. It is
            # waited for as long as it takes (a timeout here would not stop it, and the commit would be applied
            # with no record of it), unless the daemon stops first.
            future = asyncio.run_coroutine_threadsafe(self.runner.apply_loaded(documents, source), loop)
            while True:
                try:
                    return future.result(timeout=1.0)
                except concurrent.futures.TimeoutError:
                    if self._git_stop.is_set():
                        future.cancel()
                        raise gitsync.GitError("the daemon is stopping: the commit was not applied") from None

        sync = gitsync.GitSync(
            source=gitsync.GitSource(config, private_dir(self.state_dir / GIT_DIR)),
            apply=apply,
            state=self.state_dir / GIT_STATE_FILE,
        )
        self._git = asyncio.create_task(
            gitsync.watch(sync, record=self.runner.record, stopping=self._git_stop), name="headway-git-sync"
        )
        return sync

    def describe(self, rollout: Rollout) -> dict[str, Any]:
        """The embedded fields of a rollout's API view: where its traffic enters."""
        proxy = self.proxies.get(rollout_key(rollout))
        return {"trafficUrl": proxy.url} if proxy is not None else {}

    def stop(self, *, teardown: bool) -> None:
        """Ask `serve` to return; ``teardown`` also stops every replica and proxy (``headway down``)."""
        self._teardown = self._teardown or teardown
        self._stop.set()

    async def serve(self) -> None:
        await self._stop.wait()
        await self.close(teardown=self._teardown)

    async def close(self, *, teardown: bool) -> None:
        self._git_stop.set()
        if self._git is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._git, timeout=gitsync.GIT_TIMEOUT)
        self.runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._loop, timeout=10)
        await asyncio.to_thread(self.runner.close)
        await self.daemon.close()
        (self.state_dir / ENDPOINT_FILE).unlink(missing_ok=True)
        if self.notifier is not None:
            await self.notifier.close(drain_seconds=NOTIFY_DRAIN_SECONDS)
        if self.gates is not None:
            self.gates.close()
        await asyncio.to_thread(self.platform.close, keep=not teardown)
        if teardown:
            await asyncio.to_thread(self.proxies.stop_all)
        self.store.close()
        if teardown:
            forget(self.state_dir)


def build_embedded(
    state_dir: Path | str,
    *,
    resync: float = DEFAULT_RESYNC,
    on_pass: Callable[[str, PassResult], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    notify: NotifyConfig | None = None,
) -> Embedded:
    """Wire embedded mode on ``state_dir`` (call inside a running event loop); StateLockedError if taken.

    ``notify`` delivers the rollouts' events to webhooks; gate webhooks (``spec.webhooks``) are always called.
    """
    path = Path(state_dir).resolve()
    store = SqliteStore(path)
    loop = asyncio.get_running_loop()
    holder: dict[str, Runner] = {}

    def backends_changed(_hash: str, _backends: list[tuple[str, int]]) -> None:
        # On the platform's supervisor thread: hand over to the loop, which pushes backends and reconciles.
        loop.call_soon_threadsafe(lambda: holder["runner"].wake() if "runner" in holder else None)

    try:
        platform = LocalPlatform(path, on_backends_changed=backends_changed, environ=_replica_environ())
    except BaseException:
        store.close()
        raise
    proxies = Proxies(path)
    executor, analysis_tick = build_analysis(store, proxies, path)
    gates = HttpGates()
    router = ProxyRouter(proxies.admin_url, token=proxies.token)
    router.instance_of = proxies.instance  # so the engine tells a restarted proxy from an edited one
    engine = Engine(platform=platform, router=router, runs=executor, store=store, gates=gates)
    notifier = Notifier(notify) if notify is not None and notify.sinks else None

    failing: dict[str, str] = {}
    """The last failure to update each rollout's proxy, so it is reported on the rollout once, not every turn."""

    async def sync_backends(_now: datetime, *, repair: bool = False) -> None:
        """Keep every proxy's backends equal to the ready replicas (blue/green: all traffic to the active one).

        Before the passes, only what changed since the last push is sent (replicas that became ready or left).
        After them (``repair``), the proxy's live state is read back and whatever differs is set again, with a
        ``TrafficDrift`` event naming it: a pass has just observed the broken state (a stable revision without
        backends is not Healthy), so the repair follows within the same turn, and the pass the core asked for a
        second later reads it back before the rollout is Healthy again.
        """
        for key, rollout in runner.rollouts().items():
            if not uses_proxy(rollout):
                continue
            ready = {h: platform.backends(rollout, h) for h in platform.revisions(rollout)}
            blue_green = rollout.spec.strategy.blue_green
            active = platform.services(rollout).get(blue_green.active_service or "") if blue_green else None
            try:
                if repair:
                    changed = proxies.repair(rollout, ready, active)
                    if changed:
                        message = (
                            f"Traffic routing of {rollout.name} differs from what Headway set: {'; '.join(changed)}. "
                            f"Assumed cause: an edit of the proxy's state outside Headway (the proxy, "
                            f"{proxies.instance(rollout)}, was not restarted). Set it again."
                        )
                        log.warning("%s: %s", key, message)
                        runner.record(key, "Warning", "TrafficDrift", message)
                    continue
                proxies.sync(rollout, ready)
                if blue_green is not None:
                    proxies.route_active(rollout, active)
            except (OSError, PermanentError, TemporaryError) as error:
                message = f"updating the proxy of {rollout.name} failed: {error}"
                log.warning("%s: %s", key, message)
                if failing.get(key) != message:  # on the rollout, once per distinct failure (not every turn)
                    runner.record(key, "Warning", "ProxyUpdateFailed", message)
                failing[key] = message
            else:
                failing.pop(key, None)

    async def repair_backends(now: datetime) -> None:
        await sync_backends(now, repair=True)

    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    runner = Runner(
        engine,
        store,
        hooks=[sync_backends, analysis_tick],
        after=[repair_backends],
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


def still_running(state_dir: Path | str) -> dict[str, str]:
    """What a previous instance left running in ``state_dir``, by rollout key: its proxy and replica PIDs, as text.

    Read from the files the data plane is known by (proxy endpoint files, ``platform.json``); a PID counts only
    if it is still the recorded process. PermanentError when ``platform.json`` cannot be read.
    """
    path = Path(state_dir)
    replicas = running_replicas(path / PLATFORM_FILE)
    proxies = {key: p for key, p in Proxies(path).known().items() if is_proxy(p.pid)}
    found: dict[str, str] = {}
    for key in sorted({*replicas, *proxies}):
        parts = []
        if key in proxies:
            parts.append(f"proxy PID {proxies[key].pid} serving {proxies[key].listen}")
        if key in replicas:
            pids = ", ".join(str(pid) for pid in sorted(replicas[key]))
            parts.append(f"{len(replicas[key])} replica{'s' if len(replicas[key]) != 1 else ''} (PID {pids})")
        found[key] = " and ".join(parts)
    return found


def lost_state(state_dir: Path | str) -> str | None:
    """Why starting on ``state_dir`` would lose track of running processes (the message to show), else None.

    The database is missing, empty, or lacks rollouts whose proxy or replicas still run: the records were lost
    (deleted, truncated, replaced) while the data plane kept serving. StateError for a database that cannot be
    read (with its path), StateLockedError while another instance holds the directory.
    """
    path = Path(state_dir).resolve()
    running = still_running(path)
    if not running:
        return None
    db = path / DB_NAME
    stored: set[str] = set()
    if not db.exists():
        why = "it is missing"
    else:
        why = "it is empty" if db.stat().st_size == 0 else "it has no record of them"
        store = SqliteStore(path)  # even when empty: what a leftover write-ahead log holds counts
        try:
            stored = {key for key, _, _ in store.list_documents("Rollout")}
        finally:
            store.close()
    lost = {key: what for key, what in running.items() if key not in stored}
    if not lost:
        return None
    listed = "; ".join(f"{key}: {what}" for key, what in lost.items())
    return (
        f"{db}: {why}, but rollouts of this state directory still run ({listed}). Starting as if nothing ran "
        "would redeploy over them at full weight, so headway will not.\n"
        "  headway up --adopt [-f FILE]  keep them serving; each rollout's serving revision becomes its stable "
        "one, so the next apply rolls out through its steps\n"
        "  headway up --reset            stop them and start afresh (a database is moved aside, not deleted)"
    )


def reset(state_dir: Path | str) -> None:
    """``--reset``: stop every replica and proxy ``state_dir`` knows of and start afresh.

    Unlike `teardown` it does not open the database, which may be what is broken: a non-empty one is renamed
    ``headway.db.reset-<time>`` (moved aside, never deleted). StateLockedError while an instance holds the
    directory.
    """
    path = Path(state_dir).resolve()
    lock = StateLock(path)
    try:
        LocalPlatform(path).close()
        Proxies(path).stop_all()
        db = path / DB_NAME
        if db.exists() and db.stat().st_size > 0:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                part = path / (DB_NAME + suffix)
                if part.exists():
                    part.replace(path / f"{DB_NAME}.reset-{stamp}{suffix}")
        (path / ENDPOINT_FILE).unlink(missing_ok=True)
    finally:
        lock.release()
    forget(path)


def teardown(state_dir: Path | str) -> None:
    """Stop every replica and proxy a (dead) daemon left in ``state_dir``; StateLockedError if one is alive."""
    path = Path(state_dir).resolve()
    store = SqliteStore(path)
    try:
        LocalPlatform(path).close()
        Proxies(path).stop_all()
        (path / ENDPOINT_FILE).unlink(missing_ok=True)
    finally:
        store.close()
    forget(path)


STATE_FILES = (
    "headway.db",
    "headway.db-wal",
    "headway.db-shm",
    "platform.json",
    TOKEN_FILE,
    ENDPOINT_FILE,
    GIT_STATE_FILE,  # the commit last applied dies with the rollouts it made: the next start applies it again
)


def forget(state_dir: Path) -> None:
    """After everything stopped: drop the rollout state, keep the logs.

    Nothing runs any more, so a status saying "v2 is stable at 2 replicas" would describe a world that is gone;
    the next `headway up -f FILE` deploys FILE afresh, like a first start. (A crash, by contrast, keeps the
    state: the processes it describes are still running.)
    """
    for name in STATE_FILES:
        (state_dir / name).unlink(missing_ok=True)
    for path in (state_dir / "proxies").glob("*.json"):
        path.unlink(missing_ok=True)


NOTIFY_FILE = "notify.yaml"
"""Notification config read at start when ``--notify`` is not given: ``<state_dir>/notify.yaml``."""
NOTIFY_DRAIN_SECONDS = 3.0
"""How long a stopping daemon waits for queued notifications (a completion sent just before `down`)."""


def notify_config(state_dir: Path, file: Path | None) -> NotifyConfig | None:
    """The notification config: ``file``, else ``<state_dir>/notify.yaml`` when present, else none.

    A bad file stops the start with the field named (NotifyConfigError, a ValueError): silently not notifying
    would be found out only when someone missed an alert."""
    chosen = file if file is not None else state_dir / NOTIFY_FILE
    if file is None and not chosen.exists():
        return None
    return NotifyConfig.load(chosen)


async def _serve(
    state_dir: Path, port: int, notify: Path | None = None, *, adopt: bool = False, do_reset: bool = False
) -> int:
    if do_reset:
        await asyncio.to_thread(reset, state_dir)
    elif not adopt:
        problem = await asyncio.to_thread(lost_state, state_dir)
        if problem is not None:
            raise StateError(problem)
    git = gitsync.load_config(state_dir / GIT_CONFIG_FILE)  # before anything starts: a bad file fails the start
    embedded = build_embedded(state_dir, notify=notify_config(state_dir, notify), clock=SteadyClock())
    url = await embedded.start(port)
    if git is not None:
        embedded.sync_git(git)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: embedded.stop(teardown=False))
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    await embedded.serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headway.bootstrap", description="Run the embedded daemon.")
    parser.add_argument("--state-dir", required=True, help="where state, logs and the API token live")
    parser.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--notify", type=Path, default=None, help=f"notification config (default: {NOTIFY_FILE})")
    parser.add_argument("--log-level", default="INFO")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--adopt", action="store_true", help="start even if the database lost running rollouts")
    choice.add_argument("--reset", action="store_true", help="stop what a previous instance left and start afresh")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(Path(args.state_dir), args.port, args.notify, adopt=args.adopt, do_reset=args.reset))
    except (OSError, ValueError, StateError, PermanentError) as error:  # a locked, lost or unreadable state dir
        print(f"headway: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
