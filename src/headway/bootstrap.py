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
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
from headway.private_files import append_private, private_dir, write_private_atomically
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.proxy import ProxyProvider
from headway.providers.registry import default_registry
from headway.routers.proxy import ProxyRouter
from headway.runtimes.embedded import gitsync
from headway.runtimes.embedded.daemon import Daemon, new_token
from headway.runtimes.embedded.dashboard_source import RunnerSource
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

PROXY_PLUGIN = "headway.dev/proxy"
"""The ``trafficRouting.plugins`` key that routes a rollout through the built-in proxy; config ``{port: 8080}``."""
PORT_ANNOTATION = "headway.dev/proxy-port"
"""Where a blue/green rollout (no trafficRouting) names its traffic port; 0 or absent: any free port."""
PROXY_MODULE = "headway.runtimes.embedded.proxy"
PROXY_START_SECONDS = 15.0
PROXY_TOKEN_FILE = "admin.token"
"""In ``<state_dir>/proxies/``: the token every proxy of this instance requires on its admin API (mode 0600)."""
DEFAULT_RESYNC = 1.0
GIT_DIR = "git"
"""The private copy of the followed repository (fetched commits only)."""


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
        self.dir = private_dir(state_dir / "proxies")
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
        gone = current or recorded
        process = self._start(key, port)
        if gone is not None:
            log.warning(
                "the proxy of %s (pid %d) was gone; started pid %d on %s with its saved routing",
                key,
                gone.pid,
                process.pid,
                process.listen,
            )
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
            write_private_atomically(self.token_file, self.token)
        with append_private(log_path) as log_file:
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

    def repair(self, rollout: Rollout, backends: Mapping[str, list[tuple[str, int]]], active: str | None) -> list[str]:
        """Read the proxy's live state and set again what differs from ``backends`` (and, for blue/green, from
        all traffic to ``active``); what someone else changed (not a change of ours still on its way) is described
        in the list returned, for the runtime's event and log line.

        `sync` pushes only what changed since its last push, so on its own it never sees an edit made through the
        admin API (the case-2 outage: a stable revision's backends emptied while its replicas run); this looks.
        """
        key = rollout_key(rollout)
        proxy = self.ensure(rollout)
        live = _request("GET", proxy.admin_url + "/state", self.token)
        if not isinstance(live, dict):
            raise OSError(f"the proxy of {key} answered GET /state with {type(live).__name__}")
        wanted = {h: sorted(f"{host}:{port}" for host, port in items) for h, items in backends.items()}
        pushed = {h: sorted(items) for h, items in self._pushed.get(key, {}).items()}
        found = _live_backends(live)
        patch: dict[str, list[str] | None] = {}
        changed: list[str] = []
        for revision in sorted(set(wanted) | set(found)):
            want, have = wanted.get(revision), found.get(revision, [])
            if (want or []) == have:
                continue
            patch[revision] = want
            if pushed.get(revision) == want or (want is None and revision not in pushed):
                changed.append(
                    f"backends of revision {revision}: expected {_addresses(want)} (its ready replicas), "
                    f"found {_addresses(have)}"
                )
        body: dict[str, Any] = {"backends": patch} if patch else {}
        if active is not None:
            split = {"stable": active, "canary": None, "weights": {active: 100}}
            live_split = {k: live.get(k) for k in ("stable", "canary")} | {"weights": live.get("weights") or {}}
            if live_split != split:
                body.update(split)
                if self._active.get(key) == active:
                    found_split = json.dumps(live_split, sort_keys=True)
                    changed.append(f"traffic split: expected all traffic to {active}, found {found_split}")
        if body:
            _request("PATCH", proxy.admin_url + "/state", self.token, body)
        self._pushed[key] = {h: [f"{host}:{port}" for host, port in items] for h, items in backends.items()}
        if active is not None:
            self._active[key] = active
        return changed

    def instance(self, rollout: Rollout) -> str | None:
        """The proxy process serving ``rollout`` as it is known here (PID and kernel start time), for
        `ProxyRouter.instance_of`: a different answer means the proxy was replaced."""
        process = self._running.get(rollout_key(rollout))
        if process is None:
            return None
        try:
            start = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
        except (OSError, IndexError):
            start = "?"
        return f"pid {process.pid} started at tick {start}"

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


def _live_backends(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """The proxy's backends that take new requests, per revision, sorted (from its ``GET /state``)."""
    found: dict[str, list[str]] = {}
    for revision, items in (state.get("backends") or {}).items():
        addresses = [item if isinstance(item, str) else item.get("address") for item in items or ()]
        draining = [False if isinstance(item, str) else bool(item.get("draining")) for item in items or ()]
        found[str(revision)] = sorted(str(a) for a, d in zip(addresses, draining, strict=True) if not d)
    return found


def _addresses(items: list[str] | None) -> str:
    return "[" + ", ".join(items or []) + "]" if items else "no backends"


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
    """Readers (the CLI) see the old file or the new one, never a half-written one; only the owner reads it."""
    write_private_atomically(path, text)


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
        write_private_atomically(path, token)
    elif path.stat().st_mode & 0o077:
        log.warning("%s was readable by others: restricted to its owner (headway down replaces the token)", path)
        path.chmod(0o600)
    return token


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
        _write_atomically(self.state_dir / ENDPOINT_FILE, json.dumps({"url": self.url, "pid": os.getpid()}))
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
                log.warning("updating the proxy of %s failed: %s", rollout_key(rollout), error)

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
    proxies = {key: p for key, p in Proxies(path).known().items() if _is_proxy(p.pid)}
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
