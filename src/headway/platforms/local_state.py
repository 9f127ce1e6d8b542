"""What the local platform knows about its replicas, and how it survives the controller: ``platform.json``.

The platform's own bookkeeping (revisions, replicas, replicas on their way out, service selectors) lives in these
dataclasses, and is written to ``<state_dir>/platform.json`` whenever it changes (atomically: a temporary file
renamed over the old one), so that a platform started after a ``kill -9`` can adopt the processes still running.
Reading it back adopts a replica only if its recorded process is still the same one (see
`headway.platforms.local_process.ReplicaProcess.adopt`); replicas whose process is gone start again on their
old port and count a restart. A file this code cannot read is reported, never replaced: it lists processes that
may still be running.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.core.errors import PermanentError
from headway.core.observation import RevisionState
from headway.platforms.local_process import HOST, ReplicaProcess
from headway.platforms.local_spec import ProcessSpec
from headway.private_files import write_private_atomically

Backend = tuple[str, int]

STATE_FILE = "platform.json"
STATE_FORMAT = 1


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica as `headway.platforms.local.LocalPlatform.replicas` reports it (for ``headway get`` and tests)."""

    index: int
    port: int
    pid: int | None
    ready: bool
    restarts: int
    log: Path


@dataclass
class Replica:
    """One replica's supervision state: its process, probe streak, restarts, and (when leaving) its drain."""

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
class Revision:
    """One revision of one rollout: what to run, how many, and the replicas running it."""

    rollout: str
    hash: str
    number: int
    spec: ProcessSpec
    desired: int
    min_ready: float = 0.0
    replicas: list[Replica] = field(default_factory=list)
    next_index: int = 0
    restart_queue: list[int] = field(default_factory=list)

    def members(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.replaces is None]


@dataclass
class Leaving:
    """A replica on its way out: drained, then terminated, then killed."""

    rollout: str
    hash: str
    replica: Replica
    grace: float
    told: bool = False
    """Whether the backends callback has run since the replica left the ready set: only then may it drain."""


Revisions = dict[tuple[str, str], Revision]
Services = dict[str, dict[str, str]]


def write_state(path: Path, revisions: Revisions, leaving: list[Leaving], services: Services) -> None:
    """Replace ``path`` atomically with the current bookkeeping."""
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
            for revision in revisions.values()
        ],
        "leaving": [
            {"rollout": item.rollout, "hash": item.hash, "grace": item.grace, "replica": item.replica.to_json()}
            for item in leaving
        ],
        "services": services,
    }
    write_private_atomically(path, json.dumps(state, indent=1))  # it holds env values: the owner's only


def read_state(path: Path, now: float) -> tuple[Revisions, list[Leaving], Services]:
    """Adopt what a previous instance left in ``path`` (nothing when there is no file); PermanentError if unreadable."""
    revisions: Revisions = {}
    leaving: list[Leaving] = []
    if not path.exists():
        return revisions, leaving, {}
    try:
        state = json.loads(path.read_text())
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown format {state.get('format')!r} (this headway reads {STATE_FORMAT})")
        for data in state["revisions"]:
            revision = Revision(
                rollout=data["rollout"],
                hash=data["hash"],
                number=int(data["number"]),
                spec=ProcessSpec.from_json(data["spec"]),
                desired=int(data["desired"]),
                min_ready=float(data["min_ready"]),
                next_index=int(data["next_index"]),
                restart_queue=[int(index) for index in data["restart_queue"]],
                replicas=[adopt(replica, now) for replica in data["replicas"]],
            )
            revisions[(revision.rollout, revision.hash)] = revision
        for item in state["leaving"]:
            replica = adopt(item["replica"], now)
            if replica.process is not None:
                leaving.append(Leaving(item["rollout"], item["hash"], replica, float(item["grace"])))
        services = {key: dict(value) for key, value in state["services"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PermanentError(
            f"{path} is not readable ({type(error).__name__}: {error}); stop any replicas it lists "
            "and move it aside, or restore a backup"
        ) from None
    return revisions, leaving, services


def adopt(data: Mapping[str, Any], now: float) -> Replica:
    replica = Replica(index=int(data["index"]), port=int(data["port"]), restarts=int(data["restarts"]))
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


def observe(revision: Revision, now: float) -> RevisionState:
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


def ready_backends(revision: Revision) -> list[Backend]:
    return [(HOST, replica.port) for replica in revision.replicas if replica.ready]


def running_replicas(path: Path) -> dict[str, list[int]]:
    """The PIDs of the replicas recorded in ``path`` that still run (the same process, not a recycled PID), by
    rollout key; replicas on their way out count too. Reads only: a start-up check asks this before deciding
    whether a database without rollouts is a fresh start or lost state. PermanentError if ``path`` is unreadable.
    """
    found: dict[str, list[int]] = {}
    if not path.exists():
        return found
    try:
        state = json.loads(path.read_text())
        records = [(data["rollout"], replica) for data in state["revisions"] for replica in data["replicas"]]
        records += [(item["rollout"], item["replica"]) for item in state["leaving"]]
        for rollout, data in records:
            pid = data.get("pid")
            if pid is not None and ReplicaProcess.adopt(int(pid), data.get("start_ticks"), data["argv"]) is not None:
                found.setdefault(str(rollout), []).append(int(pid))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PermanentError(
            f"{path} is not readable ({type(error).__name__}: {error}); stop any replicas it lists "
            "and move it aside, or restore a backup"
        ) from None
    return found
