"""An in-memory platform in virtual time, for unit tests, the contract suite and the simulator.

Pods of a revision become ready ``startup_seconds`` after they are scaled up, or never (a crashloop), and
available ``minReadySeconds`` later, as Kubernetes counts them. Scale-down is immediate and removes unready pods
first, like the ReplicaSet controller. The clock only moves through `advance`: the fake never reads the real
clock, so a whole rollout runs in milliseconds and every run is reproducible.

Startup times are chosen when pods are created, by the first matching rule: a per-hash override
(`startup_for_hash`), then predicates on the template (`startup_when`, e.g. "the canary image"), then the default.
Every call is logged (`calls`) so tests can assert what the engine did, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from headway.core.actions import ServiceRole
from headway.core.observation import RevisionState
from headway.spec.rollout import PodMetadata, Rollout, rollout_key

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Where virtual time starts unless told otherwise: fixed, so that runs are reproducible."""

Template = Mapping[str, Any] | None
TemplatePredicate = Callable[[str, Template], bool]
"""Chooses revisions by hash and pod template (None for a workloadRef rollout)."""


@dataclass(frozen=True)
class Call:
    """One call the engine made, for assertions: the method, the rollout key and the arguments after it."""

    method: str
    rollout: str
    args: tuple[object, ...] = ()


@dataclass
class _Pod:
    ready_at: datetime | None
    """When the pod became (or will become) ready; None: never (crashloop)."""
    restart_at: datetime | None = None
    """A pending restart takes the pod down from here until ``restarted_ready_at``."""
    restarted_ready_at: datetime | None = None

    def ready_since(self, now: datetime) -> datetime | None:
        if self.restart_at is not None and now >= self.restart_at:
            if self.restarted_ready_at is not None and now >= self.restarted_ready_at:
                return self.restarted_ready_at
            return None
        if self.ready_at is not None and now >= self.ready_at:
            return self.ready_at
        return None

    def future_times(self) -> list[datetime]:
        times = [self.ready_at, self.restart_at, self.restarted_ready_at]
        return [time for time in times if time is not None]


@dataclass
class FakeRevision:
    """A revision as the fake holds it; read it through `FakePlatform.revision`."""

    hash: str
    number: int
    template: Template
    pods: list[_Pod] = field(default_factory=list)
    restarts: int = 0
    metadata: PodMetadata | None = None
    """The ephemeral pod metadata of the revision's current role (`set_pod_metadata`)."""

    @property
    def replicas(self) -> int:
        return len(self.pods)


@dataclass
class _Rollout:
    min_ready_seconds: float = 0.0
    revisions: dict[str, FakeRevision] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    workload_ref_replicas: int | None = None
    """The referenced Deployment's replicas; None until a test sets it (`set_workload_ref_replicas`)."""


class FakePlatform:
    """Implements `headway.platforms.base.Platform` in memory, in virtual time."""

    def __init__(self, *, startup_seconds: float | None = 0.0, now: datetime = EPOCH) -> None:
        _check_aware(now)
        self.now = now
        self.default_startup = startup_seconds
        self.calls: list[Call] = []
        self._startup_by_hash: dict[str, float | None] = {}
        self._startup_rules: list[tuple[TemplatePredicate, float | None]] = []
        self._rollouts: dict[str, _Rollout] = {}

    # --- configuration and control (not part of the Protocol) ------------------------------------------------

    def startup_for_hash(self, pod_hash: str, seconds: float | None) -> None:
        """Pods of ``pod_hash`` created from now on get ready after ``seconds`` (None: never)."""
        self._startup_by_hash[pod_hash] = seconds

    def startup_when(self, predicate: TemplatePredicate, seconds: float | None) -> None:
        """Pods of revisions matching ``predicate`` get ready after ``seconds`` (None: never); first rule wins."""
        self._startup_rules.append((predicate, seconds))

    def advance(self, now: datetime) -> None:
        """Move the clock to ``now``; time never goes backwards."""
        _check_aware(now)
        if now < self.now:
            raise ValueError(f"virtual time goes forward only: {now.isoformat()} < {self.now.isoformat()}")
        self.now = now

    def next_change_at(self) -> datetime | None:
        """The next time a pod becomes ready or available: when a watch-driven controller would look again."""
        upcoming: list[datetime] = []
        for state in self._rollouts.values():
            delay = timedelta(seconds=state.min_ready_seconds)
            for revision in state.revisions.values():
                for pod in revision.pods:
                    for time in pod.future_times():
                        upcoming.extend(t for t in (time, time + delay) if t > self.now)
        return min(upcoming, default=None)

    def revision(self, rollout: Rollout | str, pod_hash: str) -> FakeRevision | None:
        state = self._rollouts.get(rollout_key(rollout))
        return state.revisions.get(pod_hash) if state else None

    def services(self, rollout: Rollout | str) -> Mapping[str, str]:
        """The current Service → revision hash mapping of a rollout."""
        state = self._rollouts.get(rollout_key(rollout))
        return dict(state.services) if state else {}

    def template_of(self, rollout: Rollout | str, pod_hash: str) -> Template:
        revision = self.revision(rollout, pod_hash)
        return revision.template if revision else None

    def set_workload_ref_replicas(self, rollout: Rollout | str, replicas: int) -> None:
        """Stand in for the user's Deployment that ``spec.workloadRef`` names, at ``replicas``."""
        self._rollouts.setdefault(rollout_key(rollout), _Rollout()).workload_ref_replicas = replicas

    def workload_ref_replicas(self, rollout: Rollout | str) -> int | None:
        state = self._rollouts.get(rollout_key(rollout))
        return state.workload_ref_replicas if state else None

    def methods_called(self) -> list[str]:
        return [call.method for call in self.calls]

    # --- the Platform Protocol -----------------------------------------------------------------------------

    def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
        state = self._state(rollout)
        return {pod_hash: self._observe(state, revision) for pod_hash, revision in state.revisions.items()}

    def create_revision(self, rollout: Rollout, hash: str, number: int, replicas: int) -> None:
        self._log("create_revision", rollout, hash, number, replicas)
        state = self._state(rollout)
        revision = state.revisions.get(hash)
        if revision is None:
            revision = FakeRevision(hash=hash, number=number, template=rollout.spec.template)
            state.revisions[hash] = revision
        self._scale(revision, replicas)

    def scale_revision(self, rollout: Rollout, hash: str, replicas: int) -> None:
        self._log("scale_revision", rollout, hash, replicas)
        self._scale(self._existing(rollout, hash), replicas)

    def delete_revision(self, rollout: Rollout, hash: str) -> None:
        self._log("delete_revision", rollout, hash)
        state = self._state(rollout)
        state.revisions.pop(hash, None)

    def restart_revision(self, rollout: Rollout, hash: str, before: datetime | None = None) -> None:
        """Every pod, one at a time (the fake reports no pod ages, so the core never passes ``before``)."""
        self._log("restart_revision", rollout, hash)
        revision = self._existing(rollout, hash)
        revision.restarts += 1
        startup = self._startup(revision)
        step = timedelta(seconds=startup or 0.0)
        for index, pod in enumerate(revision.pods):
            down = self.now + step * index
            if pod.restart_at is not None and self.now >= pod.restart_at:
                pod.ready_at = pod.restarted_ready_at  # an earlier restart has begun: its outcome is the pod now
            pod.restart_at = down
            pod.restarted_ready_at = None if startup is None else down + step

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        self._log("switch_service", rollout, role, service, hash)
        self._state(rollout).services[service] = hash

    def set_pod_metadata(self, rollout: Rollout, hash: str, metadata: PodMetadata | None) -> None:
        self._log("set_pod_metadata", rollout, hash, metadata)
        revision = self._state(rollout).revisions.get(hash)
        if revision is not None:
            revision.metadata = metadata

    def scale_workload_ref(self, rollout: Rollout, replicas: int) -> None:
        self._log("scale_workload_ref", rollout, replicas)
        state = self._state(rollout)
        if state.workload_ref_replicas is not None:
            state.workload_ref_replicas = min(state.workload_ref_replicas, max(replicas, 0))

    # --- internals -----------------------------------------------------------------------------------------

    def _state(self, rollout: Rollout) -> _Rollout:
        state = self._rollouts.setdefault(rollout_key(rollout), _Rollout())
        state.min_ready_seconds = float(rollout.spec.min_ready_seconds)
        return state

    def _existing(self, rollout: Rollout, pod_hash: str) -> FakeRevision:
        revision = self._state(rollout).revisions.get(pod_hash)
        if revision is None:
            # The core only acts on revisions it observed; reaching this is a bug in the caller, not weather.
            raise ValueError(f"revision {pod_hash!r} of {rollout_key(rollout)} does not exist")
        return revision

    def _log(self, method: str, rollout: Rollout, *args: object) -> None:
        self.calls.append(Call(method=method, rollout=rollout_key(rollout), args=args))

    def _startup(self, revision: FakeRevision) -> float | None:
        if revision.hash in self._startup_by_hash:
            return self._startup_by_hash[revision.hash]
        for predicate, seconds in self._startup_rules:
            if predicate(revision.hash, revision.template):
                return seconds
        return self.default_startup

    def _scale(self, revision: FakeRevision, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        if replicas > revision.replicas:
            startup = self._startup(revision)
            ready_at = None if startup is None else self.now + timedelta(seconds=startup)
            revision.pods.extend(_Pod(ready_at=ready_at) for _ in range(replicas - revision.replicas))
        elif replicas < revision.replicas:
            # Like the ReplicaSet controller: unready pods go first, then the newest.
            ranked = sorted(
                enumerate(revision.pods),
                key=lambda item: (item[1].ready_since(self.now) is not None, -item[0]),
            )
            doomed = {index for index, _ in ranked[: revision.replicas - replicas]}
            revision.pods = [pod for index, pod in enumerate(revision.pods) if index not in doomed]

    def _observe(self, state: _Rollout, revision: FakeRevision) -> RevisionState:
        min_ready = timedelta(seconds=state.min_ready_seconds)
        since = [pod.ready_since(self.now) for pod in revision.pods]
        ready = [time for time in since if time is not None]
        return RevisionState(
            hash=revision.hash,
            number=revision.number,
            replicas=revision.replicas,
            ready=len(ready),
            available=sum(1 for time in ready if time + min_ready <= self.now),
        )


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"virtual time must be timezone-aware (UTC), got {now.isoformat()}")
