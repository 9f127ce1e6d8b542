"""The embedded mode's platform: each revision is N local processes, supervised like a ReplicaSet's pods.

The Platform methods only record what is wanted and return at once; a supervisor thread owned by the platform
does the slow work every ``tick`` seconds: start replicas on free ports, probe them for readiness, restart crashed
ones with exponential backoff (a crash-looping revision stays at ready 0, so the engine's progress deadline fires),
replace replicas one at a time on restart, and drain removed ones. `revisions` reads the cached observed state.

Removing a replica never drops a request: it leaves the ready set first (the injected
``on_backends_changed(hash, backends)`` tells the proxy), then the supervisor waits until the proxy reports no
request in flight to it (``in_flight(backend)``; without one, ``drain_seconds``), all within the pod's
``terminationGracePeriodSeconds``; then SIGTERM, then SIGKILL once the grace period is over.

The data plane outlives the controller: replicas run in their own sessions, and every replica's PID, start time,
command line and port are written to ``<state_dir>/platform.json`` as soon as it starts. A platform started on the
same directory after a crash adopts the replicas still alive (same ports, no restart, ready as they were) and
starts only those that died. `close` stops every replica and leaves no process behind; ``close(keep=True)``
hands them to the next instance instead.

Callbacks run on the supervisor thread and must neither block nor call back into the platform. The platform does
not lock its directory itself (platforms may not import stores): the runtime holds `headway.stores.sqlite.StateLock`
(taken by `SqliteStore`) on the same directory before it starts one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.core.actions import ServiceRole
from headway.core.errors import PermanentError
from headway.core.observation import RevisionState
from headway.platforms.base import rollout_key
from headway.platforms.local_process import HOST, ReplicaProcess, free_port, run_probe
from headway.platforms.local_spec import ProcessSpec, process_spec
from headway.spec.rollout import Rollout

log = logging.getLogger(__name__)

Backend = tuple[str, int]
BackendsChanged = Callable[[str, list[Backend]], None]
InFlight = Callable[[Backend], int]

STATE_FILE = "platform.json"
STATE_FORMAT = 1
STARTUP_PROBE_SECONDS = 0.1
"""How often a replica that was never ready is probed: local processes start in milliseconds."""


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica as `LocalPlatform.replicas` reports it (for ``headway get`` and tests)."""

    index: int
    port: int
    pid: int | None
    ready: bool
    restarts: int
    log: Path


@dataclass
class _Replica:
    index: int
    port: int
    process: ReplicaProcess | None = None
    ready: bool = False
    ever_ready: bool = False
    ready_since: float | None = None
    started_at: float = 0.0
    next_probe_at: float = 0.0
    probe: Future[bool] | None = None
    successes: int = 0
    failures: int = 0
    restarts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = 0.0
    """When to (re)start the process; None while it runs."""
    replaces: int | None = None
    """The index this surge replica replaces during a restart."""
    # draining (only for replicas on the platform's leaving list)
    drain_from: float | None = None
    term_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        process = self.process
        return {
            "index": self.index,
            "port": self.port,
            "pid": process.pid if process else None,
            "start_ticks": process.start_ticks if process else None,
            "argv": process.argv if process else [],
            "ready": self.ready,
            "restarts": self.restarts,
            "replaces": self.replaces,
        }


@dataclass
class _Revision:
    rollout: str
    hash: str
    number: int
    spec: ProcessSpec
    desired: int
    min_ready: float = 0.0
    replicas: list[_Replica] = field(default_factory=list)
    next_index: int = 0
    restart_queue: list[int] = field(default_factory=list)

    def members(self) -> list[_Replica]:
        return [replica for replica in self.replicas if replica.replaces is None]


@dataclass
class _Leaving:
    """A replica on its way out: drained, then terminated, then killed."""

    rollout: str
    hash: str
    replica: _Replica
    grace: float
    told: bool = False
    """Whether the backends callback has run since the replica left the ready set: only then may it drain."""


class LocalPlatform:
    """Implements `headway.platforms.base.Platform` with local processes; see the module docstring."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        on_backends_changed: BackendsChanged | None = None,
        in_flight: InFlight | None = None,
        drain_seconds: float = 1.0,
        default_command: Sequence[str] = (),
        backoff: tuple[float, float] = (0.5, 30.0),
        backoff_reset_seconds: float = 10.0,
        tick: float = 0.05,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._on_backends_changed = on_backends_changed
        self._in_flight = in_flight
        self._drain_seconds = drain_seconds
        self._default_command = tuple(default_command)
        self._backoff = backoff
        self._backoff_reset = backoff_reset_seconds
        self._tick = tick
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.RLock()
        self._revisions: dict[tuple[str, str], _Revision] = {}
        self._leaving: list[_Leaving] = []
        self._services: dict[str, dict[str, str]] = {}
        self._notified: dict[tuple[str, str], list[Backend]] = {}
        self._dirty = False
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="headway-probe")
        self._stop = threading.Event()
        self._load()
        self._thread = threading.Thread(target=self._run, name="headway-supervisor", daemon=True)
        self._thread.start()

    # --- the Platform Protocol ---------------------------------------------------------------------------------

    def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
        key, now = rollout_key(rollout), time.monotonic()
        with self._lock:
            return {
                revision.hash: _observe(revision, now)
                for (owner, _), revision in self._revisions.items()
                if owner == key
            }

    def create_revision(self, rollout: Rollout, hash: str, number: int, replicas: int) -> None:
        spec = process_spec(rollout.spec.template, self._default_command)
        with self._lock:
            revision = self._revisions.get((rollout_key(rollout), hash))
            if revision is None:
                revision = _Revision(rollout=rollout_key(rollout), hash=hash, number=number, spec=spec, desired=0)
                self._revisions[(revision.rollout, hash)] = revision
            revision.min_ready = float(rollout.spec.min_ready_seconds)
            self._scale(revision, replicas)

    def scale_revision(self, rollout: Rollout, hash: str, replicas: int) -> None:
        with self._lock:
            revision = self._existing(rollout, hash)
            revision.min_ready = float(rollout.spec.min_ready_seconds)
            self._scale(revision, replicas)

    def delete_revision(self, rollout: Rollout, hash: str) -> None:
        with self._lock:
            revision = self._revisions.pop((rollout_key(rollout), hash), None)
            if revision is not None:
                for replica in revision.replicas:
                    self._leave(revision, replica)
                self._dirty = True

    def restart_revision(self, rollout: Rollout, hash: str) -> None:
        with self._lock:
            revision = self._existing(rollout, hash)
            revision.restart_queue.extend(replica.index for replica in revision.members())
            self._dirty = True

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        """Record the selector: locally the proxy router does the routing, so a Service is only a name → hash."""
        with self._lock:
            self._services.setdefault(rollout_key(rollout), {})[service] = hash
            self._dirty = True

    # --- what the runtime reads --------------------------------------------------------------------------------

    def backends(self, rollout: Rollout | str, hash: str) -> list[Backend]:
        """The ``(host, port)`` of every ready replica of a revision, for the proxy."""
        with self._lock:
            revision = self._revisions.get((_key(rollout), hash))
            return [] if revision is None else _ready_backends(revision)

    def services(self, rollout: Rollout | str) -> Mapping[str, str]:
        with self._lock:
            return dict(self._services.get(_key(rollout), {}))

    def replicas(self, rollout: Rollout | str, hash: str) -> list[ReplicaInfo]:
        with self._lock:
            revision = self._revisions.get((_key(rollout), hash))
            if revision is None:
                return []
            return [
                ReplicaInfo(
                    index=replica.index,
                    port=replica.port,
                    pid=replica.process.pid if replica.process and replica.restart_at is None else None,
                    ready=replica.ready,
                    restarts=replica.restarts,
                    log=self.log_path(revision.rollout, hash, replica.index),
                )
                for replica in revision.replicas
            ]

    def log_path(self, rollout: Rollout | str, hash: str, index: int) -> Path:
        return self.state_dir / "logs" / _key(rollout) / f"{hash}-{index}.log"

    def close(self, *, keep: bool = False) -> None:
        """Stop supervising; stop every replica (SIGTERM, then SIGKILL after its grace) unless ``keep``."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._probes.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            if keep:
                self._persist()
                return
            for revision in list(self._revisions.values()):
                for replica in revision.replicas:
                    self._leaving.append(
                        _Leaving(revision.rollout, revision.hash, replica, revision.spec.grace_seconds)
                    )
            self._revisions.clear()
            leaving, self._leaving = self._leaving, []
            _stop_all([item.replica for item in leaving], max((item.grace for item in leaving), default=0.0))
            self._persist()

    # --- desired state (called under the lock) -----------------------------------------------------------------

    def _existing(self, rollout: Rollout, hash: str) -> _Revision:
        revision = self._revisions.get((rollout_key(rollout), hash))
        if revision is None:
            raise ValueError(f"revision {hash!r} of {rollout_key(rollout)} does not exist")
        return revision

    def _scale(self, revision: _Revision, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        revision.desired = replicas
        self._dirty = True
        if len(revision.members()) == replicas:
            return
        # A scale cancels a rolling restart in progress: its surge replica becomes an ordinary member.
        revision.restart_queue.clear()
        for replica in revision.replicas:
            replica.replaces = None
        taken = self._ports()
        while len(revision.replicas) < replicas:
            port = free_port(taken)
            taken.add(port)
            revision.replicas.append(_Replica(index=revision.next_index, port=port))
            revision.next_index += 1
        # Like the ReplicaSet controller: unready replicas go first, then the newest.
        ranked = sorted(revision.replicas, key=lambda replica: (replica.ready, -replica.index))
        for replica in ranked[: max(0, len(revision.replicas) - replicas)]:
            revision.replicas.remove(replica)
            self._leave(revision, replica)

    def _leave(self, revision: _Revision, replica: _Replica) -> None:
        self._leaving.append(_Leaving(revision.rollout, revision.hash, replica, revision.spec.grace_seconds))
        self._dirty = True

    def _ports(self) -> set[int]:
        ports = {item.replica.port for item in self._leaving}
        for revision in self._revisions.values():
            ports.update(replica.port for replica in revision.replicas)
        return ports

    # --- the supervisor ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._pass()
            except Exception:  # the supervisor must outlive any one bad pass; the next tick retries
                log.exception("local platform supervisor pass failed")

    def _pass(self) -> None:
        now = time.monotonic()
        with self._lock:
            for revision in list(self._revisions.values()):
                for replica in list(revision.replicas):
                    self._supervise(revision, replica, now)
                self._roll(revision)
            changes = self._backend_changes()
            for item in self._leaving:
                if not item.told:
                    item.told, item.replica.drain_from = True, now
        for key, backends in changes:
            if self._on_backends_changed is None:
                continue
            try:
                self._on_backends_changed(key[1], backends)
            except Exception:  # forget we told it, so that the next tick tells it again
                log.exception("backends callback failed for %s %s", *key)
                with self._lock:
                    self._notified.pop(key, None)
        with self._lock:
            self._drain(time.monotonic())
            if self._dirty:
                self._persist()

    def _supervise(self, revision: _Revision, replica: _Replica, now: float) -> None:
        process = replica.process
        if replica.restart_at is not None:
            if now >= replica.restart_at:
                self._start(revision, replica, now)
            return
        if process is None or not process.alive():
            self._crashed(revision, replica, now)
            return
        if replica.crashes_in_a_row and now - replica.started_at >= self._backoff_reset:
            replica.crashes_in_a_row = 0
        probe = revision.spec.readiness
        if probe is None:
            self._set_ready(replica, True, now)
            return
        if replica.probe is not None:
            if not replica.probe.done():
                return
            passed = replica.probe.result()
            replica.probe = None
            if passed:
                replica.successes, replica.failures = replica.successes + 1, 0
                if replica.successes >= probe.success_threshold:
                    self._set_ready(replica, True, now)
            else:
                replica.successes, replica.failures = 0, replica.failures + 1
                if replica.failures >= probe.failure_threshold:
                    self._set_ready(replica, False, now)
            period = probe.period if replica.ever_ready else min(probe.period, STARTUP_PROBE_SECONDS)
            replica.next_probe_at = now + period
        if now >= replica.next_probe_at and replica.probe is None:
            env = revision.spec.environment(self._environ, replica.port, revision.hash, replica.index)
            replica.probe = self._probes.submit(run_probe, probe, replica.port, env, revision.spec.working_dir)

    def _start(self, revision: _Revision, replica: _Replica, now: float) -> None:
        spec = revision.spec
        env = spec.environment(self._environ, replica.port, revision.hash, replica.index)
        path = self.log_path(revision.rollout, revision.hash, replica.index)
        replica.started_at, replica.restart_at = now, None
        replica.successes = replica.failures = 0
        replica.next_probe_at = now + (spec.readiness.initial_delay if spec.readiness else 0.0)
        try:
            replica.process = ReplicaProcess.spawn(spec.argv(env), env, spec.working_dir, path)
        except OSError as error:
            with path.open("a") as out:
                out.write(f"--- headway: cannot start {list(spec.command)}: {error}\n")
            replica.process = None
            self._crashed(revision, replica, now)
        self._dirty = True
        self._persist()  # before anything else can happen: a crash now must not lose track of this process

    def _crashed(self, revision: _Revision, replica: _Replica, now: float) -> None:
        self._set_ready(replica, False, now)
        replica.restarts += 1
        replica.crashes_in_a_row += 1
        base, cap = self._backoff
        replica.restart_at = now + min(cap, base * 2 ** (replica.crashes_in_a_row - 1))
        if replica.probe is not None:
            replica.probe.cancel()
            replica.probe = None
        self._dirty = True
        code = replica.process.returncode if replica.process else None
        log.info(
            "%s %s-%d exited (%s); restart #%d", revision.rollout, revision.hash, replica.index, code, replica.restarts
        )

    def _set_ready(self, replica: _Replica, ready: bool, now: float) -> None:
        if ready and not replica.ready:
            replica.ready_since, replica.ever_ready = now, True
            self._dirty = True
        elif not ready and replica.ready:
            replica.ready_since = None
            self._dirty = True
        replica.ready = ready

    def _roll(self, revision: _Revision) -> None:
        """One step of a rolling restart: surge a replacement, and retire the old replica once it is ready."""
        surge = next((replica for replica in revision.replicas if replica.replaces is not None), None)
        if surge is not None:
            if surge.ready:
                old = next((r for r in revision.replicas if r.index == surge.replaces), None)
                surge.replaces = None
                if old is not None:
                    revision.replicas.remove(old)
                    self._leave(revision, old)
            return
        members = {replica.index for replica in revision.replicas}
        while revision.restart_queue:
            index = revision.restart_queue.pop(0)
            if index in members:
                port = free_port(self._ports())
                revision.replicas.append(_Replica(index=revision.next_index, port=port, replaces=index))
                revision.next_index += 1
                self._dirty = True
                return

    def _backend_changes(self) -> list[tuple[tuple[str, str], list[Backend]]]:
        current = {key: _ready_backends(revision) for key, revision in self._revisions.items()}
        changes = [(key, backends) for key, backends in current.items() if self._notified.get(key, []) != backends]
        changes += [(key, []) for key in self._notified if key not in current and self._notified[key]]
        self._notified = current
        return changes

    def _drain(self, now: float) -> None:
        """Advance every leaving replica: out of rotation (already told) → no request in flight → TERM → KILL."""
        for item in list(self._leaving):
            replica, process = item.replica, item.replica.process
            if replica.probe is not None:
                replica.probe.cancel()
                replica.probe = None
            if process is None or replica.restart_at is not None:
                self._leaving.remove(item)
                self._dirty = True
                continue
            if replica.term_at is None:
                if not item.told or (replica.ready and not self._drained(item, now)):
                    continue
                process.signal_group(signal.SIGTERM)
                replica.term_at = now
            if process.group_alive():
                if now - replica.term_at >= item.grace:
                    process.signal_group(signal.SIGKILL)
                continue
            self._leaving.remove(item)
            self._dirty = True

    def _drained(self, item: _Leaving, now: float) -> bool:
        started = item.replica.drain_from or now
        if now - started >= item.grace:
            return True
        if self._in_flight is None:
            return now - started >= min(self._drain_seconds, item.grace)
        settle = min(self._tick * 2, item.grace)  # a request picked just before the change may still be connecting
        return now - started >= settle and self._in_flight((HOST, item.replica.port)) == 0

    # --- persistence -------------------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _persist(self) -> None:
        state = {
            "format": STATE_FORMAT,
            "revisions": [
                {
                    "rollout": revision.rollout,
                    "hash": revision.hash,
                    "number": revision.number,
                    "desired": revision.desired,
                    "min_ready": revision.min_ready,
                    "next_index": revision.next_index,
                    "restart_queue": revision.restart_queue,
                    "spec": revision.spec.to_json(),
                    "replicas": [replica.to_json() for replica in revision.replicas],
                }
                for revision in self._revisions.values()
            ],
            "leaving": [
                {"rollout": item.rollout, "hash": item.hash, "grace": item.grace, "replica": item.replica.to_json()}
                for item in self._leaving
            ],
            "services": self._services,
        }
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        temporary.replace(self.state_file)
        self._dirty = False

    def _load(self) -> None:
        """Adopt what a previous instance left running; replicas that died start again (a restart each)."""
        if not self.state_file.exists():
            return
        try:
            state = json.loads(self.state_file.read_text())
            if state.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {state.get('format')!r} (this headway reads {STATE_FORMAT})")
            now = time.monotonic()
            for data in state["revisions"]:
                revision = _Revision(
                    rollout=data["rollout"],
                    hash=data["hash"],
                    number=int(data["number"]),
                    spec=ProcessSpec.from_json(data["spec"]),
                    desired=int(data["desired"]),
                    min_ready=float(data["min_ready"]),
                    next_index=int(data["next_index"]),
                    restart_queue=[int(index) for index in data["restart_queue"]],
                    replicas=[_adopt(replica, now) for replica in data["replicas"]],
                )
                self._revisions[(revision.rollout, revision.hash)] = revision
            for item in state["leaving"]:
                replica = _adopt(item["replica"], now)
                if replica.process is not None:
                    self._leaving.append(_Leaving(item["rollout"], item["hash"], replica, float(item["grace"])))
            self._services = {key: dict(value) for key, value in state["services"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PermanentError(
                f"{self.state_file} is not readable ({type(error).__name__}: {error}); stop any replicas it lists "
                "and move it aside, or restore a backup"
            ) from None
        self._notified = {key: _ready_backends(revision) for key, revision in self._revisions.items()}


def _adopt(data: Mapping[str, Any], now: float) -> _Replica:
    replica = _Replica(index=int(data["index"]), port=int(data["port"]), restarts=int(data["restarts"]))
    replica.replaces = data.get("replaces")
    pid = data.get("pid")
    process = ReplicaProcess.adopt(int(pid), data.get("start_ticks"), data["argv"]) if pid is not None else None
    if process is None:
        if pid is not None:
            replica.restarts += 1  # it died while no one was watching
        return replica  # restart_at = 0: starts on the first tick
    replica.process, replica.restart_at, replica.started_at = process, None, now
    if data.get("ready"):
        # Ready before the crash, so it counts as available at once: a restart of the controller must not make
        # the engine see capacity drop (monotonic clocks do not survive a process, so "long ago" it is).
        replica.ready = replica.ever_ready = True
        replica.ready_since = float("-inf")
    return replica


def _observe(revision: _Revision, now: float) -> RevisionState:
    members = revision.members()
    ready = [replica for replica in members if replica.ready]
    available = [r for r in ready if r.ready_since is not None and now - r.ready_since >= revision.min_ready]
    return RevisionState(
        hash=revision.hash,
        number=revision.number,
        replicas=revision.desired,
        ready=len(ready),
        available=len(available),
    )


def _ready_backends(revision: _Revision) -> list[Backend]:
    return [(HOST, replica.port) for replica in revision.replicas if replica.ready]


def _stop_all(replicas: list[_Replica], grace: float) -> None:
    """TERM every group, wait up to ``grace`` for all of them, KILL what remains, and wait for it to go."""
    processes = [replica.process for replica in replicas if replica.process is not None]
    for process in processes:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(process.group_alive() for process in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in processes:
        process.signal_group(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(process.group_alive() for process in processes) and time.monotonic() < deadline:
        time.sleep(0.02)


def _key(rollout: Rollout | str) -> str:
    return rollout if isinstance(rollout, str) else rollout_key(rollout)
