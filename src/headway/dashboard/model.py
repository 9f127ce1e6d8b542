"""What a person looks at: a rollout as one JSON-ready view, shared by the dashboard, the CLI and the daemon.

The view is what the embedded daemon's ``GET /rollouts/{ns}/{name}`` returns and what a Kubernetes source builds
from the Rollout, its ReplicaSets and AnalysisRuns, so one renderer (`headway.cli.views`, the dashboard page)
serves both modes. Wire names are camelCase like the daemon's JSON; unknown keys are ignored, so a newer daemon
can add fields without breaking an older CLI. Values are computed by the source; nothing here does I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class Action(StrEnum):
    """What the dashboard's buttons (and the CLI) can ask of a rollout."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    UNDO = "undo"


class PodView(View):
    """One pod of a ReplicaSet (Kubernetes only), as ``kubectl argo rollouts get`` lists them."""

    name: str
    phase: str = "Pending"
    """The pod's phase (Pending, Running, Succeeded, Failed), or Terminating once it is being deleted."""
    ready: str = "0/0"
    """Ready containers / containers."""
    restarts: int = 0


class RevisionView(View):
    """One revision: a ReplicaSet (Kubernetes) or a group of processes (embedded)."""

    hash: str
    number: int = 0
    replicas: int = 0
    ready: int = 0
    available: int = 0
    image: str | None = None
    role: str = ""
    """stable, canary, active, preview, or empty for an old revision (filled by `with_roles` when absent)."""
    pods: list[PodView] = []
    """The ReplicaSet's pods (Kubernetes); empty where a revision has none to show."""


class MeasurementView(View):
    metric: str
    at: datetime
    value: float | None = None
    phase: str = "Successful"
    message: str = ""


class JudgePoint(View):
    """The statistical judge's estimate of canary/stable bad-event ratio at one moment, with its bounds."""

    at: datetime
    ratio: float
    lower: float | None = None
    upper: float | None = None
    """None: unbounded so far (not enough evidence)."""


class JudgeEvidence(View):
    """Why the judge decided: the ratio estimate, its confidence sequence, the anytime p-value."""

    ratio: float
    lower: float | None = None
    upper: float | None = None
    """None: unbounded so far (not enough evidence)."""
    p_value: float
    e_value: float | None = None
    tolerated_ratio: float = 1.0
    verdict: str = ""
    canary_requests: int = 0
    stable_requests: int = 0
    history: list[JudgePoint] = []
    metric: str = ""
    """The judge metric's name (its measurements are the windows charted in ``history``); empty when unknown."""


class AnalysisRunView(View):
    name: str
    phase: str = "Running"
    message: str = ""
    kind: str = ""
    revision: str | None = None
    """The hash of the revision the run judges; None: matched by the hash in the run's name."""
    measurements: list[MeasurementView] = []
    judge: JudgeEvidence | None = None


class EventView(View):
    at: datetime | None = None
    type: str = "Normal"
    reason: str
    message: str = ""


class WeightPoint(View):
    at: datetime
    set: int
    """The weight the rollout asked for (status.canary.weights)."""
    actual: int | None = None
    """What the router reports or traffic shows; None when unknown."""


class RolloutView(View):
    """A rollout for humans. The summary fields come first; the detail lists may be empty in a list view."""

    name: str
    namespace: str = "default"
    strategy: str = "canary"
    phase: str | None = None
    message: str = ""
    paused: bool = False
    aborted: bool = False
    step: int | None = None
    steps: int | None = None
    canary_weight: int = 0
    actual_weight: int | None = None
    stable_hash: str | None = None
    current_hash: str | None = None
    stable_image: str | None = None
    current_image: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    revision_kind: str = "ReplicaSet"
    """What a revision is made of in this mode: ReplicaSet (Kubernetes) or Processes (embedded)."""
    step_list: list[str] = []
    revisions: list[RevisionView] = []
    analysis_runs: list[AnalysisRunView] = []
    experiments: list[AnalysisRunView] = []
    events: list[EventView] = []
    weight_history: list[WeightPoint] = []
    spec: dict[str, Any] = {}
    status: dict[str, Any] = {}

    @model_validator(mode="after")
    def _labelled_steps(self) -> RolloutView:
        """A source that sends the spec but no step labels (the embedded daemon's JSON) still gets them."""
        if not self.step_list and self.spec:
            self.step_list = steps_of(self.spec)
        return self

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def summary(self) -> RolloutView:
        """The view without its detail lists (what a list page needs)."""
        return self.model_copy(
            update={
                "revisions": [],
                "analysis_runs": [],
                "experiments": [],
                "events": [],
                "weight_history": [],
                "spec": {},
                "status": {},
            }
        )


class ChangeEvent(View):
    """Something about a rollout changed; the dashboard refetches it. ``reason`` is empty for a plain update."""

    rollout: str
    """``namespace/name``."""
    reason: str = ""
    message: str = ""
    type: str = "Normal"
    at: datetime | None = None


class ActionResult(View):
    ok: bool
    message: str


class ActionRefusedError(Exception):
    """The action does not apply now (the message says why); the dashboard answers 409 with it."""


class RolloutNotFoundError(Exception):
    """No such rollout; the dashboard answers 404."""


class SourceUnavailableError(Exception):
    """The source cannot answer now (the cluster is unreachable…); the dashboard answers 503 with the message,
    which says what to check."""


def describe_step(step: dict[str, Any]) -> str:
    """One canary step as a short label: ``setWeight 20``, ``pause 30s``, ``pause (until promoted)``…"""
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}"
    if "pause" in step:
        duration = (step.get("pause") or {}).get("duration")
        return f"pause {duration}" if duration is not None else "pause (until promoted)"
    if "analysis" in step:
        names = [t.get("templateName") or t.get("clusterTemplateName") for t in step["analysis"].get("templates", [])]
        return "analysis " + ", ".join(str(n) for n in names if n)
    if "experiment" in step:
        return "experiment"
    if "setCanaryScale" in step:
        scale = step["setCanaryScale"] or {}
        what = scale.get("weight", scale.get("replicas", "matchTrafficWeight"))
        return f"setCanaryScale {what}"
    if "setHeaderRoute" in step:
        return f"setHeaderRoute {(step['setHeaderRoute'] or {}).get('name', '')}".rstrip()
    if "setMirrorRoute" in step:
        return f"setMirrorRoute {(step['setMirrorRoute'] or {}).get('name', '')}".rstrip()
    return next(iter(step), "step")


def steps_of(spec: dict[str, Any]) -> list[str]:
    """The labels of a Rollout spec's canary steps (wire form); empty for blue/green."""
    canary = (spec.get("strategy") or {}).get("canary") or {}
    return [describe_step(step) for step in canary.get("steps") or []]


def with_roles(view: RolloutView) -> RolloutView:
    """Fill in revision roles (stable / canary, active / preview) from the hashes when the source did not."""
    if all(revision.role for revision in view.revisions):
        return view
    blue_green = view.strategy.lower() in ("bluegreen", "blue-green", "blue_green")
    revisions = []
    for revision in view.revisions:
        role = revision.role
        if not role:
            if revision.hash == view.stable_hash:
                role = "active" if blue_green else "stable"
            elif revision.hash == view.current_hash:
                role = "preview" if blue_green else "canary"
        revisions.append(revision.model_copy(update={"role": role}))
    return view.model_copy(update={"revisions": revisions})


def observed_phase(
    phase: str | None, message: str, generation: int | str | None, observed: int | str | None
) -> tuple[str | None, str]:
    """The phase to show: a status written for an older spec generation is Progressing, not its stale phase.

    Right after an edit the status still describes the previous spec (often Healthy); a pipeline's
    ``headway status`` must not pass the new version before the engine has even seen it. Without both numbers
    (an older controller, a manifest never stored) the status is taken as it is.
    """
    if observed is None or generation is None or str(observed) == str(generation):
        return phase, message
    return "Progressing", f"waiting for the controller to observe generation {generation} (status is for {observed})"
