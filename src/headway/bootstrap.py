"""The composition root: the only place that wires a mode's adapters into the engine and its runtime.

Embedded mode, on one machine, with everything under one state directory:

- status and applied manifests in SQLite (`headway.stores.sqlite`), which also holds the directory's lock, so a
  second instance on the same directory refuses to start instead of fighting the first;
- revisions as local processes (`headway.platforms.local`), which survive the controlling process;
- one weighted proxy process per rollout routed through it (``trafficRouting.plugins["headway.dev/proxy"]``),
  started in its own session so it survives too, adopted again after a restart (`Proxies`), driven by
  `headway.routers.proxy.ProxyRouter`; the runner keeps each proxy's backends equal to the platform's ready
  replicas (`Proxies.sync`);
- the runner (`headway.runtimes.embedded.runner`) and the local API (`headway.runtimes.embedded.daemon`).

``python -m headway.bootstrap --state-dir DIR --port P`` runs the embedded daemon (``headway up`` starts it
detached). SIGTERM or SIGINT stops the controller only and leaves the data plane serving, like a crash would;
``POST /api/v1/shutdown`` (``headway down``) stops everything and forgets the rollouts (`forget`); `teardown`
does the same for what a dead daemon left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from headway.core.errors import PermanentError, TemporaryError
from headway.dashboard.app import create_app
from headway.engine.analysis import AnalysisExecutor, EnvironmentSecrets
from headway.engine.gates import HttpGates
from headway.engine.notify import Notifier, NotifyConfig
from headway.engine.reconcile import Engine, PassResult
from headway.platforms.base import rollout_key
from headway.platforms.local import LocalPlatform
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.proxy import ProxyProvider
from headway.providers.registry import default_registry
from headway.routers.proxy import ProxyRouter
from headway.runtimes.embedded.daemon import Daemon, new_token
from headway.runtimes.embedded.dashboard_source import RunnerSource
from headway.runtimes.embedded.runner import Hook, Runner, put
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, TOKEN_FILE
from headway.spec.analysis import AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Metric
from headway.spec.rollout import Rollout
from headway.stores.sqlite import SqliteStore, StateError

log = logging.getLogger(__name__)
TemplateT = TypeVar("TemplateT", AnalysisTemplate, ClusterAnalysisTemplate)

PROXY_PLUGIN = "headway.dev/proxy"
"""The ``trafficRouting.plugins`` key that routes a rollout through the built-in proxy; config ``{port: 8080}``."""
PORT_ANNOTATION = "headway.dev/proxy-port"
"""Where a blue/green rollout (no trafficRouting) names its traffic port; 0 or absent: any free port."""
PROXY_MODULE = "headway.runtimes.embedded.proxy"
PROXY_START_SECONDS = 15.0
PROXY_TOKEN_FILE = "admin.token"
"""In ``<state_dir>/proxies/``: the token every proxy of this instance requires on its admin API (mode 0600)."""
DEFAULT_RESYNC = 1.0


# --- proxies -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyProcess:
    """A running proxy: its PID and where it listens for traffic and for the admin API."""

    key: str
    pid: int
    listen: str
    admin: str

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"


class Proxies:
    """One proxy process per routed rollout: started on demand, adopted after a restart, stopped on teardown.

    A proxy's endpoint is recorded in ``<state_dir>/proxies/<namespace>_<name>.json`` and its routing state in
    ``….state.json`` (the proxy saves and reloads that file itself), so a restarted controller finds the
    proxy that kept serving, and a proxy that died comes back on the same port with the same weights.

    Their admin APIs require the instance's proxy token, kept in ``<state_dir>/proxies/admin.token`` (0600) from
    the first start until `stop_all`, so proxies adopted after a controller restart still accept it. A proxy
    reads it from that file (``--token-file``): on the command line every local user could read it in ``ps``.
    """

    def __init__(self, state_dir: Path, *, python: str = sys.executable) -> None:
        self.dir = state_dir / "proxies"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.token_file = self.dir / PROXY_TOKEN_FILE
        self.token = _proxy_token(self.token_file)
        self._running: dict[str, ProxyProcess] = {}
        self._pushed: dict[str, dict[str, list[str]]] = {}
        self._active: dict[str, str] = {}

    def _file(self, key: str, suffix: str) -> Path:
        return self.dir / f"{key.replace('/', '_')}{suffix}"

    def known(self) -> dict[str, ProxyProcess]:
        """Every proxy recorded in the state directory, alive or not."""
        found = {}
        for path in sorted(self.dir.glob("*.endpoint.json")):
            try:
                data = json.loads(path.read_text())
                found[data["key"]] = ProxyProcess(data["key"], int(data["pid"]), data["listen"], data["admin"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable proxy endpoint file %s", path)
        return found

    def get(self, key: str) -> ProxyProcess | None:
        return self._running.get(key)

    def ensure(self, rollout: Rollout) -> ProxyProcess:
        """The rollout's proxy, adopted if alive, else started (on its previous port when it had one)."""
        key = rollout_key(rollout)
        current = self._running.get(key)
        if current is not None and _is_proxy(current.pid) and _healthy(current.admin_url, self.token):
            return current
        recorded = self.known().get(key)
        if recorded is not None and _is_proxy(recorded.pid) and _healthy(recorded.admin_url, self.token):
            self._running[key] = recorded
            self._forget(key)
            return recorded
        port = _configured_port(rollout)
        if port == 0 and recorded is not None:
            port = int(recorded.listen.rpartition(":")[2])
        process = self._start(key, port)
        self._running[key] = process
        self._forget(key)
        return process

    def _forget(self, key: str) -> None:
        """A proxy found or started anew gets everything pushed again: what it holds is not known here."""
        self._pushed.pop(key, None)
        self._active.pop(key, None)

    def admin_url(self, rollout: Rollout) -> str:
        """For `ProxyRouter`: a temporary error while the proxy cannot be started, so the pass is retried."""
        try:
            return self.ensure(rollout).admin_url
        except OSError as error:
            raise TemporaryError(f"starting the proxy of {rollout_key(rollout)} failed: {error}", delay=2.0) from None

    def _start(self, key: str, port: int) -> ProxyProcess:
        endpoint = self._file(key, ".endpoint.json")
        log_path = self._file(key, ".log")
        command = [
            self.python,
            "-m",
            PROXY_MODULE,
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            "127.0.0.1:0",
            "--state-file",
            str(self._file(key, ".state.json")),
            "--token-file",
            str(self.token_file),
        ]
        if not self.token_file.exists():  # removed by a `stop_all` of this same object: write it again
            _write_token(self.token_file, self.token)
        with log_path.open("ab") as log_file:
            offset = log_file.tell()
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # survives the controller and its terminal's signals
                close_fds=True,
            )
        deadline = time.monotonic() + PROXY_START_SECONDS
        while time.monotonic() < deadline:
            bound = _first_json_line(log_path, offset)
            if bound is not None:
                process = ProxyProcess(key, child.pid, bound["listen"], bound["admin"])
                _write_atomically(endpoint, json.dumps({"key": key, **vars(process)}))
                return process
            if child.poll() is not None:
                tail = log_path.read_bytes()[offset:].decode(errors="replace").strip()[-500:]
                raise OSError(f"proxy exited with {child.returncode}: {tail or 'no output'}")
            time.sleep(0.02)
        child.kill()
        raise OSError(f"proxy did not report its address within {PROXY_START_SECONDS:.0f} s (log: {log_path})")

    def sync(self, rollout: Rollout, backends: Mapping[str, list[tuple[str, int]]]) -> None:
        """Make the proxy's backends equal to ``backends`` (revision hash → ready replicas); writes only changes."""
        key = rollout_key(rollout)
        wanted = {hash: [f"{host}:{port}" for host, port in items] for hash, items in backends.items()}
        pushed = self._pushed.get(key, {})
        patch: dict[str, list[str] | None] = {h: b for h, b in wanted.items() if pushed.get(h) != b}
        patch.update({h: None for h in pushed if h not in wanted})
        if not patch:
            return
        proxy = self.ensure(rollout)
        _request("PATCH", proxy.admin_url + "/state", self.token, {"backends": patch})
        self._pushed[key] = wanted

    def route_active(self, rollout: Rollout, active: str | None) -> None:
        """Blue/green: send all traffic to the revision the active Service selects (after its backends are in)."""
        key = rollout_key(rollout)
        if active is None or self._active.get(key) == active:
            return
        proxy = self.ensure(rollout)
        body = {"stable": active, "canary": None, "weights": {active: 100}}
        _request("PATCH", proxy.admin_url + "/state", self.token, body)
        self._active[key] = active

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM every recorded proxy (it drains), SIGKILL after ``grace``; forget their endpoints and token."""
        recorded = {**self.known(), **self._running}
        for process in recorded.values():
            if _is_proxy(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in recorded.values():
            while _is_proxy(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _is_proxy(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            self._file(process.key, ".endpoint.json").unlink(missing_ok=True)
        self.token_file.unlink(missing_ok=True)
        self._running.clear()
        self._pushed.clear()
        self._active.clear()


def uses_proxy(rollout: Rollout) -> bool:
    """Canaries routed through the built-in proxy, and every blue/green rollout (the proxy is its active Service)."""
    if rollout.spec.strategy.blue_green is not None:
        return True
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary is not None else None
    return routing is not None and PROXY_PLUGIN in (routing.plugins or {})


def _configured_port(rollout: Rollout) -> int:
    """The traffic port: the proxy plugin's ``port`` (canary) or the ``headway.dev/proxy-port`` annotation."""
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary is not None else None
    config = (routing.plugins or {}).get(PROXY_PLUGIN) if routing is not None else None
    if isinstance(config, dict) and "port" in config:
        port: object = config["port"]
        where = f"spec.strategy.canary.trafficRouting.plugins[{PROXY_PLUGIN}].port"
    else:
        port = rollout.metadata.annotations.get(PORT_ANNOTATION, "0")
        where = f"metadata.annotations[{PORT_ANNOTATION}]"
        port = int(port) if isinstance(port, str) and port.isdigit() else port
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise PermanentError(f"{where}: expected a port number (0 for any free port), got {port!r}")
    return port


def _write_atomically(path: Path, text: str) -> None:
    """Readers (the CLI) see the old file or the new one, never a half-written one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _first_json_line(path: Path, offset: int) -> dict[str, Any] | None:
    try:
        text = path.read_bytes()[offset:].decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and "listen" in data and "admin" in data:
                    return data
    return None


def _proxy_token(path: Path) -> str:
    """The instance's proxy token: the one in ``path`` if there is one, else a new one written there (0600)."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        _write_token(path, token)
    elif path.stat().st_mode & 0o077:
        log.warning("%s was readable by others: restricted to its owner (headway down replaces the token)", path)
        path.chmod(0o600)
    return token


def _write_token(path: Path, token: str) -> None:
    """Created 0600 before the token is written (never widened); replaced atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)
    partial.replace(path)


def _is_proxy(pid: int) -> bool:
    """Alive, not a zombie, and really a proxy (a recycled PID must never be killed)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return PROXY_MODULE in cmdline and stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _healthy(admin_url: str, token: str) -> bool:
    """Alive and accepting our token: a proxy that refuses it could not be driven, so it is not adopted."""
    try:
        _request("GET", admin_url + "/state", token)
    except OSError:
        return False
    return True


def _request(method: str, url: str, token: str, body: object = None, timeout: float = 2.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


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


ANALYSIS_RUN = "AnalysisRun"


def build_analysis(store: SqliteStore, proxies: Proxies, state_dir: Path) -> tuple[AnalysisExecutor, Hook]:
    """The in-process analysis executor over the applied templates, and the hook that measures and persists runs.

    Runs are saved as documents after every tick that changed them and loaded back at start, so a controller
    killed mid-analysis resumes the same run with the measurements it had.
    """
    registry = default_registry()
    providers: dict[str, MetricProvider] = {kind: registry.get(kind) for kind in registry.known()}
    executor = AnalysisExecutor(
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
            raise StateError(f"{store.path}: saved analysis run {key} is not readable: {error}") from None
        executor.load(run)
        saved[key] = run

    async def tick(now: datetime) -> None:
        await executor.tick(now)
        for name in list(executor.runs):
            run = executor.run(name)
            if run is not None and saved.get(name) != run:
                put(store, ANALYSIS_RUN, name, run.model_dump(by_alias=True, mode="json", exclude_none=True))
                saved[name] = run

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
        )
        self.url = await self.daemon.start("127.0.0.1", port)
        _write_atomically(self.state_dir / ENDPOINT_FILE, json.dumps({"url": self.url, "pid": os.getpid()}))
        self._loop = asyncio.create_task(self.runner.run(), name="headway-runner")
        return self.url

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
        self.runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._loop, timeout=10)
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
    engine = Engine(platform=platform, router=router, runs=executor, store=store, gates=gates)
    notifier = Notifier(notify) if notify is not None and notify.sinks else None

    async def sync_backends(_now: datetime) -> None:
        for rollout in runner.rollouts().values():
            if uses_proxy(rollout):
                ready = {h: platform.backends(rollout, h) for h in platform.revisions(rollout)}
                blue_green = rollout.spec.strategy.blue_green
                try:
                    proxies.sync(rollout, ready)
                    if blue_green is not None:
                        proxies.route_active(rollout, platform.services(rollout).get(blue_green.active_service or ""))
                except (OSError, PermanentError) as error:
                    log.warning("updating the proxy of %s failed: %s", rollout_key(rollout), error)

    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    runner = Runner(
        engine,
        store,
        hooks=[sync_backends, analysis_tick],
        after=[sync_backends],
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


STATE_FILES = ("headway.db", "headway.db-wal", "headway.db-shm", "platform.json", TOKEN_FILE, ENDPOINT_FILE)


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


async def _serve(state_dir: Path, port: int, notify: Path | None = None) -> int:
    embedded = build_embedded(state_dir, notify=notify_config(state_dir, notify))
    url = await embedded.start(port)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(Path(args.state_dir), args.port, args.notify))
    except (OSError, ValueError, StateError) as error:  # a locked or unreadable state directory, a busy port
        print(f"headway: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
