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

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from headway.core.actions import ServiceRole
from headway.core.observation import RevisionState
from headway.platforms.local_process import HOST, ReplicaProcess, free_port, run_probe
from headway.platforms.local_spec import process_spec
from headway.platforms.local_state import (
    STATE_FILE,
    Backend,
    Leaving,
    Replica,
    ReplicaInfo,
    Revision,
    observe,
    read_state,
    ready_backends,
    write_state,
)
from headway.private_files import private_dir
from headway.spec.rollout import PodMetadata, Rollout, rollout_key

log = logging.getLogger(__name__)

BackendsChanged = Callable[[str, list[Backend]], None]
InFlight = Callable[[Backend], int]

STARTUP_PROBE_SECONDS = 0.1
"""How often a replica that was never ready is probed: local processes start in milliseconds."""


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
        self.state_dir = private_dir(Path(state_dir))
        self._on_backends_changed = on_backends_changed
        self._in_flight = in_flight
        self._drain_seconds = drain_seconds
        self._default_command = tuple(default_command)
        self._backoff = backoff
        self._backoff_reset = backoff_reset_seconds
        self._tick = tick
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.RLock()
        self._notified: dict[tuple[str, str], list[Backend]] = {}
        """What the backends callback was last told, per revision; empty at start, so adopted backends are told."""
        self._dirty = False
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="headway-probe")
        self._stop = threading.Event()
        self._revisions, self._leaving, self._services = read_state(self.state_file, time.monotonic())
        self._thread = threading.Thread(target=self._run, name="headway-supervisor", daemon=True)
        self._thread.start()

    # --- the Platform Protocol ---------------------------------------------------------------------------------

    def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
        key, now = rollout_key(rollout), time.monotonic()
        with self._lock:
            return {
                revision.hash: observe(revision, now)
                for (owner, _), revision in self._revisions.items()
                if owner == key
            }

    def create_revision(self, rollout: Rollout, hash: str, number: int, replicas: int) -> None:
        spec = process_spec(rollout.spec.template, self._default_command)
        with self._lock:
            revision = self._revisions.get((rollout_key(rollout), hash))
            if revision is None:
                revision = Revision(rollout=rollout_key(rollout), hash=hash, number=number, spec=spec, desired=0)
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

    def restart_revision(self, rollout: Rollout, hash: str, before: datetime | None = None) -> None:
        """Queue every replica; the supervisor replaces them one at a time, each after its successor is ready
        (no pod ages are reported here, so the core asks once and never passes ``before``)."""
        with self._lock:
            revision = self._existing(rollout, hash)
            revision.restart_queue.extend(replica.index for replica in revision.members())
            self._dirty = True

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        """Record the selector: locally the proxy router does the routing, so a Service is only a name → hash."""
        with self._lock:
            self._services.setdefault(rollout_key(rollout), {})[service] = hash
            self._dirty = True

    def set_pod_metadata(self, rollout: Rollout, hash: str, metadata: PodMetadata | None) -> None:
        """Local processes carry no labels or annotations: ephemeral pod metadata has nothing to apply to."""

    def scale_workload_ref(self, rollout: Rollout, replicas: int) -> None:
        """No Deployments on one machine (a workloadRef rollout is refused at create_revision): nothing to scale."""

    # --- what the runtime reads --------------------------------------------------------------------------------

    def backends(self, rollout: Rollout | str, hash: str) -> list[Backend]:
        """The ``(host, port)`` of every ready replica of a revision, for the proxy."""
        with self._lock:
            revision = self._revisions.get((rollout_key(rollout), hash))
            return [] if revision is None else ready_backends(revision)

    def services(self, rollout: Rollout | str) -> Mapping[str, str]:
        with self._lock:
            return dict(self._services.get(rollout_key(rollout), {}))

    def replicas(self, rollout: Rollout | str, hash: str) -> list[ReplicaInfo]:
        with self._lock:
            revision = self._revisions.get((rollout_key(rollout), hash))
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
        return self.state_dir / "logs" / rollout_key(rollout) / f"{hash}-{index}.log"

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
                    self._leaving.append(Leaving(revision.rollout, revision.hash, replica, revision.spec.grace_seconds))
            self._revisions.clear()
            leaving, self._leaving = self._leaving, []
            _stop_all([item.replica for item in leaving], max((item.grace for item in leaving), default=0.0))
            self._persist()

    # --- desired state (called under the lock) -----------------------------------------------------------------

    def _existing(self, rollout: Rollout, hash: str) -> Revision:
        revision = self._revisions.get((rollout_key(rollout), hash))
        if revision is None:
            raise ValueError(f"revision {hash!r} of {rollout_key(rollout)} does not exist")
        return revision

    def _scale(self, revision: Revision, replicas: int) -> None:
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
            revision.replicas.append(Replica(index=revision.next_index, port=port))
            revision.next_index += 1
        # Like the ReplicaSet controller: unready replicas go first, then the newest.
        ranked = sorted(revision.replicas, key=lambda replica: (replica.ready, -replica.index))
        for replica in ranked[: max(0, len(revision.replicas) - replicas)]:
            revision.replicas.remove(replica)
            self._leave(revision, replica)

    def _leave(self, revision: Revision, replica: Replica) -> None:
        self._leaving.append(Leaving(revision.rollout, revision.hash, replica, revision.spec.grace_seconds))
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

    def _supervise(self, revision: Revision, replica: Replica, now: float) -> None:
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

    def _start(self, revision: Revision, replica: Replica, now: float) -> None:
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

    def _crashed(self, revision: Revision, replica: Replica, now: float) -> None:
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

    def _set_ready(self, replica: Replica, ready: bool, now: float) -> None:
        if ready and not replica.ready:
            replica.ready_since, replica.ever_ready = now, True
            self._dirty = True
        elif not ready and replica.ready:
            replica.ready_since = None
            self._dirty = True
        replica.ready = ready

    def _roll(self, revision: Revision) -> None:
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
                revision.replicas.append(Replica(index=revision.next_index, port=port, replaces=index))
                revision.next_index += 1
                self._dirty = True
                return

    def _backend_changes(self) -> list[tuple[tuple[str, str], list[Backend]]]:
        current = {key: ready_backends(revision) for key, revision in self._revisions.items()}
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

    def _drained(self, item: Leaving, now: float) -> bool:
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
        write_state(self.state_file, self._revisions, self._leaving, self._services)
        self._dirty = False


def _stop_all(replicas: list[Replica], grace: float) -> None:
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
