"""RolloutStatus: what the engine decided last time, saved once per pass and read back on the next one.

The fields and their wire names follow Argo Rollouts' ``RolloutStatus`` so that `kubectl argo rollouts get`-style
tools and dashboards keep working. A few Headway fields are added where Argo keeps state elsewhere:
``scaleDownAt`` holds the deadlines Argo writes as ``scale-down-deadline`` annotations on ReplicaSets (one place
of truth instead of two), and ``progressMarker``/``progressSince`` replace Argo's re-reading of condition times
for the progress deadline.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator

from headway.spec.analysis import AnalysisPhase
from headway.spec.base import Model


def _int_or_string(schema: dict[str, Any]) -> None:
    """The CRD types ``observedGeneration`` as int-or-string: Argo's string, or the integer kstatus reads."""
    schema.clear()
    schema["anyOf"] = [{"type": "integer"}, {"type": "string"}, {"type": "null"}]


class Phase(StrEnum):
    """The rollout's phase, as Argo reports it."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    DEGRADED = "Degraded"


class PauseReason(StrEnum):
    CANARY_PAUSE_STEP = "CanaryPauseStep"
    BLUE_GREEN_PAUSE = "BlueGreenPause"
    INCONCLUSIVE_ANALYSIS = "InconclusiveAnalysisRun"
    INCONCLUSIVE_EXPERIMENT = "InconclusiveExperiment"


RunPhase = AnalysisPhase
"""Phase of an AnalysisRun or Experiment as the rollout sees it (the same values as Argo's AnalysisPhase)."""


class PauseCondition(Model):
    reason: PauseReason
    start_time: datetime


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_update_time: datetime
    last_transition_time: datetime
    observed_generation: int | None = None
    """The spec generation the condition was computed for (kstatus' Ready/Reconciling/Stalled carry it)."""


class RunStatus(Model):
    """The AnalysisRun or Experiment the rollout is waiting on, and its last seen phase."""

    name: str
    status: RunPhase = RunPhase.PENDING
    message: str = ""


class WeightDestination(Model):
    weight: int = 0
    pod_template_hash: str = ""
    service_name: str = ""


class TrafficWeights(Model):
    canary: WeightDestination = WeightDestination()
    stable: WeightDestination = WeightDestination(weight=100)
    verified: bool | None = None


class CanaryStatus(Model):
    current_step_analysis_run_status: RunStatus | None = None
    current_background_analysis_run_status: RunStatus | None = None
    current_experiment: RunStatus | None = None
    weights: TrafficWeights | None = None
    header_routes: list[str] = []
    mirror_routes: list[str] = []
    selectors: dict[str, str] = {}
    """Headway: the revision each canary/stable Service was last pointed at (service name → pod hash)."""


class BlueGreenStatus(Model):
    active_selector: str | None = None
    preview_selector: str | None = None
    scale_up_preview_check_point: bool = False
    pre_promotion_analysis_run_status: RunStatus | None = None
    post_promotion_analysis_run_status: RunStatus | None = None


class RolloutStatus(Model):
    phase: Phase | None = None
    message: str = ""
    abort: bool = False
    aborted_at: datetime | None = None
    pause_conditions: list[PauseCondition] = []
    controller_pause: bool = False
    current_pod_hash: str | None = None
    stable_rs: str | None = Field(default=None, alias="stableRS")
    """Argo spells this one ``stableRS``, not the camelCase ``stableRs``."""
    current_step_index: int | None = None
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: list[Condition] = []
    canary: CanaryStatus = CanaryStatus()
    blue_green: BlueGreenStatus = BlueGreenStatus()
    promote_full: bool = False
    restarted_at: datetime | None = None
    observed_generation: str | None = Field(default=None, json_schema_extra=_int_or_string)
    """Argo writes the generation as a string; in the ``headway.dev`` group the store writes an integer, which
    kstatus (Flux, ``kubectl wait``-style tools) can compare with ``metadata.generation``. Read either way."""
    scale_down_at: dict[str, datetime] = {}
    progress_marker: str = ""
    progress_since: datetime | None = None
    deadline_exceeded: bool = False
    gates_passed: list[str] = []
    """Headway: gate webhooks (``<gate>/<hash>``) that said yes for the current update."""

    @field_validator("observed_generation", mode="before")
    @classmethod
    def _generation_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def pause_reasons(self) -> set[PauseReason]:
        return {condition.reason for condition in self.pause_conditions}

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)
