"""What the core asks the shell to do, in order. Frozen values: the engine dispatches them to adapters.

Every action is idempotent (applying it twice leaves the world as applying it once) because a pass can be
interrupted between actions and the next pass re-decides from what it then observes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from headway.spec.rollout import (
    HeaderRoutingMatch,
    PodMetadata,
    RolloutAnalysis,
    RolloutExperimentStep,
    RouteMatch,
    Webhook,
)


@dataclass(frozen=True)
class CreateRevision:
    """Start a revision of the current pod template, identified by its hash, at ``replicas``."""

    hash: str
    number: int
    replicas: int


@dataclass(frozen=True)
class ScaleRevision:
    hash: str
    replicas: int


@dataclass(frozen=True)
class DeleteRevision:
    """Remove an old, scaled-down revision beyond revisionHistoryLimit."""

    hash: str


@dataclass(frozen=True)
class RestartRevision:
    """Restart the pods/processes of a revision (``restartAt``).

    With ``before``: replace one pod created before it, unless one is still being replaced; the core asks
    again, pass after pass, once every pod is available, until none predates ``before`` (Argo's pace: one pod
    at a time, never below full availability by more than that one). Without: restart them all, one at a
    time at the platform's own pace (for platforms that cannot report pod ages).
    """

    hash: str
    before: datetime | None = None


@dataclass(frozen=True)
class SetPodMetadata:
    """Give the pods of revision ``hash`` the ephemeral labels/annotations of the role it has now.

    Argo's canaryMetadata/stableMetadata (blue/green: previewMetadata/activeMetadata): applied to the revision's
    template and, in place, to its running pods, never part of the pod-template hash, so a role change (the
    canary promoted to stable) relabels pods instead of replacing them. ``metadata=None`` removes what an earlier
    role added.
    """

    hash: str
    metadata: PodMetadata | None


@dataclass(frozen=True)
class ScaleWorkloadRef:
    """Scale the workload named by ``spec.workloadRef`` (a Deployment) down to at most ``replicas``.

    ``scaleDown: onsuccess`` asks for 0 once the Rollout is Healthy; ``progressively`` asks for what the Rollout's
    available pods do not yet cover, so the two together never drop below ``spec.replicas``. Never a scale-up:
    the user's Deployment is only ever made smaller.
    """

    replicas: int


@dataclass(frozen=True)
class SetWeight:
    """Give ``canary_weight`` percent of traffic to the canary revision, the rest to stable."""

    canary_weight: int
    canary_hash: str | None
    stable_hash: str | None


@dataclass(frozen=True)
class SetHeaderRoute:
    """Send requests matching ``match`` to the canary; ``match=None`` removes the route."""

    name: str
    match: tuple[HeaderRoutingMatch, ...] | None


@dataclass(frozen=True)
class SetMirrorRoute:
    """Mirror ``percentage`` of matching requests to the canary; ``match=None`` removes the route."""

    name: str
    match: tuple[RouteMatch, ...] | None
    percentage: int


@dataclass(frozen=True)
class RemoveManagedRoutes:
    """Remove every header and mirror route Headway added (end of rollout or abort)."""


class ServiceRole(StrEnum):
    ACTIVE = "active"
    PREVIEW = "preview"
    CANARY = "canary"
    STABLE = "stable"


@dataclass(frozen=True)
class SwitchService:
    """Point a Service (blue/green active/preview, canary/stable services) at one revision."""

    role: ServiceRole
    service: str
    hash: str


class RunKind(StrEnum):
    STEP = "step"
    BACKGROUND = "background"
    PRE_PROMOTION = "pre-promotion"
    POST_PROMOTION = "post-promotion"


@dataclass(frozen=True)
class StartAnalysisRun:
    """Create an AnalysisRun from ``analysis`` for the revision ``hash`` (stable: ``stable_hash``)."""

    name: str
    kind: RunKind
    analysis: RolloutAnalysis
    hash: str
    stable_hash: str | None


@dataclass(frozen=True)
class TerminateAnalysisRun:
    name: str


@dataclass(frozen=True)
class StartExperiment:
    name: str
    experiment: RolloutExperimentStep
    canary_hash: str
    stable_hash: str | None


@dataclass(frozen=True)
class TerminateExperiment:
    name: str


@dataclass(frozen=True)
class CallGate:
    """Ask a gate webhook (again); the answer shows up in ``Observation.gates[key]``."""

    key: str
    webhook: Webhook
    hash: str


Action = (
    CreateRevision
    | ScaleRevision
    | DeleteRevision
    | RestartRevision
    | SetPodMetadata
    | ScaleWorkloadRef
    | SetWeight
    | SetHeaderRoute
    | SetMirrorRoute
    | RemoveManagedRoutes
    | SwitchService
    | StartAnalysisRun
    | TerminateAnalysisRun
    | StartExperiment
    | TerminateExperiment
    | CallGate
)
