"""What the shell saw this pass: the clock, the revisions running, and the runs the rollout waits on.

The core never asks for anything; everything it may look at arrives here, gathered once per pass (argo's
``rolloutContext`` does the same with ``newRS``/``stableRS``/``otherRSs``). ``now`` is an input like any other,
so tests and the simulator move time by building a new observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from headway.spec.status import RunPhase


@dataclass(frozen=True)
class RevisionState:
    """One revision (a ReplicaSet, or a group of local processes) as observed."""

    hash: str
    number: int
    replicas: int = 0
    ready: int = 0
    available: int = 0
    oldest_pod_at: datetime | None = None
    """When its oldest running (not terminating) pod was created, for ``restartAt``; None when it has no pods or
    the platform cannot tell (a restart is then asked for once, and the platform paces it itself)."""


@dataclass(frozen=True)
class RunState:
    """An AnalysisRun or Experiment as observed: its phase and, for failures, why."""

    name: str
    phase: RunPhase
    message: str = ""
    evidence_gap: str = ""
    """For a run still in progress: why it has no sound evidence yet (a deciding metric not measured yet, or
    whose last measurement errored); empty when it has, or when the backend cannot tell. A rollout is never
    promoted past a background run with a gap (`headway.core.runs.promotion_blocker`)."""


class DriftKind(StrEnum):
    """Which part of the routing differs from what Headway set: it says what to set again."""

    WEIGHT = "weight"
    """The split between stable and canary (their revisions or their weights)."""
    HEADER_ROUTE = "header route"
    MIRROR_ROUTE = "mirror route"


@dataclass(frozen=True)
class Drift:
    """One difference between the live routing and what Headway last set, read back from the data plane."""

    kind: DriftKind
    name: str = ""
    """The route's name; empty for the weight."""
    expected: str = ""
    found: str = ""

    def describe(self) -> str:
        what = f"{self.kind.value} {self.name!r}" if self.name else self.kind.value
        return f"{what}: expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class RouterState:
    """What the traffic router reports the data plane does: the canary's weight (None when it cannot read
    back), whether that is verified, and what differs from what Headway set."""

    canary_weight: int | None = None
    verified: bool | None = None
    drift: tuple[Drift, ...] = ()
    """Parts of the live routing that differ from the routing the status says Headway set (see
    `headway.core.dataplane.expected_routing`); empty when they agree or nothing was compared."""
    backends: Mapping[str, int] | None = None
    """Ready (not draining) backends routed per revision hash; None when the router does not route to
    backends itself (Kubernetes Services do)."""
    stable_hash: str | None = None
    """The revision the router sends the stable share to, when it routes by revision (the embedded proxy)."""
    restarted: str = ""
    """Set when the router saw its data plane replaced since it last read it (a proxy restart): what changed."""


@dataclass(frozen=True)
class GateState:
    """The last answer of a gate webhook for one revision: passed (2xx) or not, and when it was asked."""

    key: str
    passed: bool
    asked_at: datetime
    message: str = ""
    answered: bool = True
    """False while the call is still in flight; a timeout or an error is an answer (a "no")."""


@dataclass(frozen=True)
class Observation:
    now: datetime
    revisions: Mapping[str, RevisionState] = field(default_factory=dict)
    analysis_runs: Mapping[str, RunState] = field(default_factory=dict)
    experiments: Mapping[str, RunState] = field(default_factory=dict)
    router: RouterState = RouterState()
    gates: Mapping[str, GateState] = field(default_factory=dict)

    def revision(self, pod_hash: str | None) -> RevisionState | None:
        return self.revisions.get(pod_hash) if pod_hash else None

    def run_phase(self, name: str) -> RunState | None:
        return self.analysis_runs.get(name)

    def next_revision_number(self) -> int:
        return max((r.number for r in self.revisions.values()), default=0) + 1
