"""Experiment: run one or more pod templates side by side for a while, with analyses judging them.

Mirrors Argo Rollouts' ``v1alpha1`` Experiment. Experiments are created by a Rollout's experiment step or
written by hand (to compare a baseline and a candidate before touching the Rollout). Field-level rules only;
cross-field checks (duplicate template names, analyses referring to templates in the lint set) live in
`headway.spec.validate`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import StrictBool

from headway.spec.analysis import AnalysisPhase, Argument, DryRun, MeasurementRetention
from headway.spec.base import Duration, Model, NonNegative, ObjectMeta, Percent

ExperimentPhase = AnalysisPhase
"""Argo reuses the analysis phases for experiments (Pending, Running, Successful, Failed, Error, Inconclusive);
so do we, so that a Rollout's experiment step reads the same verdicts as its analysis steps."""


class LabelSelector(Model):
    """A Kubernetes label selector; the experiment's ReplicaSet owns the pods it matches."""

    match_labels: dict[str, str] = {}
    match_expressions: list[dict[str, Any]] = []


class TemplateService(Model):
    """Ask for a Service in front of the template's pods (named after the template unless given)."""

    name: str | None = None


class ExperimentTemplate(Model):
    """One pod template of the experiment, run as its own ReplicaSet.

    ``weight`` is only meaningful when a Rollout's traffic router sends that share of traffic to the
    template's Service; a hand-written Experiment has no router and ignores it.
    """

    name: str
    replicas: NonNegative = 1
    min_ready_seconds: NonNegative = 0
    selector: LabelSelector
    template: dict[str, Any]
    service: TemplateService | None = None
    weight: Percent | None = None


class ExperimentAnalysis(Model):
    """An analysis run alongside the templates."""

    name: str
    template_name: str
    cluster_scope: StrictBool = False
    args: list[Argument] = []
    required_for_completion: StrictBool = False


class AnalysisRunMetadata(Model):
    """Labels and annotations copied onto the AnalysisRuns the experiment creates."""

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class ExperimentSpec(Model):
    """What to run and for how long. Without duration the experiment runs until terminated or an analysis
    fails; progressDeadlineSeconds (default 600) bounds how long templates may take to become available."""

    templates: list[ExperimentTemplate]
    duration: Duration | None = None
    progress_deadline_seconds: NonNegative = 600
    terminate: StrictBool = False
    analyses: list[ExperimentAnalysis] = []
    scale_down_delay_seconds: NonNegative = 30
    dry_run: list[DryRun] = []
    measurement_retention: list[MeasurementRetention] = []
    analysis_run_metadata: AnalysisRunMetadata | None = None


class TemplateStatusCode(StrEnum):
    """Where one template's ReplicaSet stands."""

    PROGRESSING = "Progressing"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def completed(self) -> bool:
        """The template will not change any more."""
        return self in {TemplateStatusCode.SUCCESSFUL, TemplateStatusCode.FAILED, TemplateStatusCode.ERROR}


class TemplateStatus(Model):
    """Replica counts and state of one template."""

    name: str
    replicas: NonNegative = 0
    updated_replicas: NonNegative = 0
    ready_replicas: NonNegative = 0
    available_replicas: NonNegative = 0
    collision_count: int | None = None
    status: TemplateStatusCode = TemplateStatusCode.PROGRESSING
    message: str | None = None
    last_transition_time: str | None = None
    service_name: str | None = None
    pod_template_hash: str | None = None


class ExperimentAnalysisRunStatus(Model):
    """The AnalysisRun created for one of the experiment's analyses, and its phase."""

    name: str
    analysis_run: str
    phase: AnalysisPhase
    message: str | None = None


class ExperimentCondition(Model):
    """A Kubernetes-style condition (InvalidSpec, Progressing, Running, Completed, ReplicaFailure)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    last_update_time: str | None = None
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class ExperimentStatus(Model):
    """What the experiment has reached."""

    phase: ExperimentPhase = AnalysisPhase.PENDING
    message: str | None = None
    template_statuses: list[TemplateStatus] = []
    available_at: str | None = None
    conditions: list[ExperimentCondition] = []
    analysis_runs: list[ExperimentAnalysisRunStatus] = []


class Experiment(Model):
    """Side-by-side pod templates with analyses, for a fixed duration or until told to stop."""

    api_version: str
    kind: Literal["Experiment"] = "Experiment"
    metadata: ObjectMeta
    spec: ExperimentSpec
    status: ExperimentStatus | None = None
