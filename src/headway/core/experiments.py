"""Running an Experiment: from its spec, last status and what the shell saw, to actions and the next status.

Argo's experiment controller (``experiments/experiment.go``: ``reconcileTemplate``, ``reconcileAnalysisRun``,
``calculateStatus``, ``calculateEnqueueDuration``) as one pure function, `decide_experiment`:

- each template runs as a ReplicaSet (``<experiment>-<template>``) at ``replicas``; its status is Progressing
  until all its pods are available, then Running; a template that makes no progress for
  ``progressDeadlineSeconds`` (counted from its last change) is Failed;
- once every template is Running the experiment records ``availableAt`` and only then starts its analyses
  (one AnalysisRun each, ``<experiment>-<analysis>``), so they never measure pods that are not there yet;
- the phase is the worst template status while templates run, the analyses' verdict once the templates
  completed (``duration`` passed after ``availableAt``, or the experiment is terminating); a Failed, Error or
  Inconclusive analysis ends it at once; with every ``requiredForCompletion`` analysis Successful it ends
  Successful without waiting for ``duration``;
- terminating (``spec.terminate``, a failed template or analysis, required analyses done, or finished) turns
  running templates Successful and terminates running AnalysisRuns; a user's ``terminate`` ends Successful, as
  in Argo, with a message saying it was terminated;
- once finished, each template's ReplicaSet is scaled to 0 after ``scaleDownDelaySeconds``; the deadline is
  kept on the ReplicaSet (Argo's ``scale-down-deadline`` annotation) so a restarted controller keeps it.

No clock reads and no I/O: ``now`` arrives in the observation, like every other fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from headway.core.analysis import iso, parse_time
from headway.core.observation import RunState
from headway.spec.analysis import AnalysisPhase
from headway.spec.base import parse_duration
from headway.spec.experiment import (
    ExperimentAnalysis,
    ExperimentAnalysisRunStatus,
    ExperimentSpec,
    ExperimentStatus,
    ExperimentTemplate,
    TemplateStatus,
    TemplateStatusCode,
)

REQUIRED_COMPLETED = "Required AnalysisRuns completed"
TERMINATED = "Experiment terminated"
PROGRESS_POLL = 10.0
"""Seconds between looks while templates become available: their ReplicaSets do not wake the Rollout's worker."""


@dataclass(frozen=True)
class TemplateReplicaSet:
    """A template's ReplicaSet as observed: desired replicas (spec), counts (status), its pod-template hash."""

    name: str
    pod_template_hash: str
    replicas: int
    current: int = 0
    ready: int = 0
    available: int = 0
    scale_down_deadline: datetime | None = None


@dataclass(frozen=True)
class ExperimentObservation:
    """What the shell read this pass: template ReplicaSets by template name, AnalysisRuns by run name."""

    now: datetime
    replica_sets: Mapping[str, TemplateReplicaSet] = field(default_factory=dict)
    analysis_runs: Mapping[str, RunState] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateTemplateReplicaSet:
    template: str
    replicas: int


@dataclass(frozen=True)
class ScaleTemplateReplicaSet:
    template: str
    replicas: int


@dataclass(frozen=True)
class MarkScaleDown:
    """Record on the template's ReplicaSet when it may be scaled to 0 (Argo's ``scale-down-deadline``)."""

    template: str
    deadline: datetime


@dataclass(frozen=True)
class StartExperimentAnalysis:
    """Create the AnalysisRun ``run`` for ``analysis`` with its arguments' values resolved."""

    run: str
    analysis: ExperimentAnalysis
    args: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TerminateExperimentAnalysis:
    run: str


ExperimentAction = (
    CreateTemplateReplicaSet
    | ScaleTemplateReplicaSet
    | MarkScaleDown
    | StartExperimentAnalysis
    | TerminateExperimentAnalysis
)


@dataclass(frozen=True)
class ExperimentDecision:
    status: ExperimentStatus
    actions: tuple[ExperimentAction, ...] = ()
    requeue_after: float | None = None
    """Seconds until a timer is due (duration, progress deadline, scale-down); None: nothing to wait for."""

    @property
    def done(self) -> bool:
        """Finished and every template scaled down: nothing will ever change again."""
        return is_done(self.status)


def is_done(status: ExperimentStatus) -> bool:
    """The phase is final and every template ReplicaSet reports no pods."""
    return status.phase.completed and all(t.replicas == 0 for t in status.template_statuses)


def replica_set_name(experiment: str, template: str) -> str:
    return f"{experiment}-{template}"


def analysis_run_name(experiment: str, analysis: str) -> str:
    return f"{experiment}-{analysis}"


# --- orders and predicates (Argo's experimentutil / analysisutil) ---------------------------------------------

_TEMPLATE_ORDER = (
    TemplateStatusCode.SUCCESSFUL,
    TemplateStatusCode.RUNNING,
    TemplateStatusCode.PROGRESSING,
    TemplateStatusCode.ERROR,
    TemplateStatusCode.FAILED,
)
_ANALYSIS_ORDER = (
    AnalysisPhase.SUCCESSFUL,
    AnalysisPhase.RUNNING,
    AnalysisPhase.PENDING,
    AnalysisPhase.INCONCLUSIVE,
    AnalysisPhase.ERROR,
    AnalysisPhase.FAILED,
)
_TEMPLATE_TO_PHASE = {
    TemplateStatusCode.SUCCESSFUL: AnalysisPhase.SUCCESSFUL,
    TemplateStatusCode.RUNNING: AnalysisPhase.RUNNING,
    TemplateStatusCode.PROGRESSING: AnalysisPhase.PENDING,
    TemplateStatusCode.ERROR: AnalysisPhase.ERROR,
    TemplateStatusCode.FAILED: AnalysisPhase.FAILED,
}


def _required_successful(spec: ExperimentSpec, runs: Mapping[str, ExperimentAnalysisRunStatus]) -> bool:
    required = [a for a in spec.analyses if a.required_for_completion]
    return bool(required) and all(a.name in runs and runs[a.name].phase == AnalysisPhase.SUCCESSFUL for a in required)


def is_terminating(spec: ExperimentSpec, status: ExperimentStatus) -> bool:
    """Argo's ``IsTerminating``: stop creating, wind down what runs."""
    if spec.terminate or status.phase.completed:
        return True
    if any(t.status in (TemplateStatusCode.FAILED, TemplateStatusCode.ERROR) for t in status.template_statuses):
        return True
    if any(r.phase.unsuccessful for r in status.analysis_runs):
        return True
    return _required_successful(spec, {r.name: r for r in status.analysis_runs})


def _duration(spec: ExperimentSpec) -> float | None:
    return parse_duration(spec.duration) if spec.duration is not None else None


def _remaining(spec: ExperimentSpec, status: ExperimentStatus, now: datetime) -> float | None:
    """Seconds of ``duration`` left after ``availableAt`` (<= 0: passed); None without a duration or start."""
    duration = _duration(spec)
    if duration is None or status.available_at is None:
        return None
    return (parse_time(status.available_at) + timedelta(seconds=duration) - now).total_seconds()


# --- templates ----------------------------------------------------------------------------------------------


@dataclass
class _Pass:
    """The working state of one decision: actions and timers collected as the steps run."""

    spec: ExperimentSpec
    old: ExperimentStatus
    obs: ExperimentObservation
    terminating: bool
    actions: list[ExperimentAction] = field(default_factory=list)
    timers: list[float] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.obs.now


def _template(p: _Pass, template: ExperimentTemplate, previous: TemplateStatus | None) -> TemplateStatus:
    """Argo's ``reconcileTemplate``: create/scale the ReplicaSet, copy its counts, assess the template."""
    now = iso(p.now)
    status = previous or TemplateStatus(name=template.name)
    changed: dict[str, object] = {}
    finished = p.old.phase.completed
    desired = 0 if finished else template.replicas
    rs = p.obs.replica_sets.get(template.name)
    if rs is None:
        if not p.terminating:
            p.actions.append(CreateTemplateReplicaSet(template.name, desired))
            changed["last_transition_time"] = now
        counts = (0, 0, 0)
    else:
        if desired == 0 and rs.replicas > 0:
            _scale_down(p, template.name, rs)
        elif rs.replicas != desired:
            p.actions.append(ScaleTemplateReplicaSet(template.name, desired))
            changed["last_transition_time"] = now
        counts = (rs.current, rs.ready, rs.available)
    if counts != (status.replicas, status.ready_replicas, status.available_replicas):
        changed["last_transition_time"] = now
    changed.update(replicas=counts[0], updated_replicas=counts[0], ready_replicas=counts[1])
    changed["available_replicas"] = counts[2]
    if rs is not None:
        changed["pod_template_hash"] = rs.pod_template_hash
    status = status.model_copy(update=changed)
    if status.status.completed:
        return status  # a completed template never goes back (Argo)
    return status.model_copy(update=_assess_template(p, template, status))


def _assess_template(p: _Pass, template: ExperimentTemplate, status: TemplateStatus) -> dict[str, object]:
    remaining = _remaining(p.spec, p.old, p.now)
    if status.available_replicas == template.replicas:
        passed = remaining is not None and remaining <= 0
        done = passed or p.terminating
        return {"status": TemplateStatusCode.SUCCESSFUL if done else TemplateStatusCode.RUNNING}
    since = parse_time(status.last_transition_time) if status.last_transition_time else p.now
    deadline = since + timedelta(seconds=p.spec.progress_deadline_seconds)
    if p.now > deadline:
        message = (
            f"Template '{template.name}' exceeded its progressDeadlineSeconds ({p.spec.progress_deadline_seconds})"
        )
        return {"status": TemplateStatusCode.FAILED, "message": message}
    if p.terminating:
        return {"status": TemplateStatusCode.SUCCESSFUL}
    p.timers.append(min(PROGRESS_POLL, (deadline - p.now).total_seconds() + 1.0))
    return {"status": TemplateStatusCode.PROGRESSING}


def _scale_down(p: _Pass, template: str, rs: TemplateReplicaSet) -> None:
    """Scale to 0 once ``scaleDownDelaySeconds`` have passed since the experiment finished (deadline on the RS)."""
    delay = p.spec.scale_down_delay_seconds
    if rs.scale_down_deadline is None and delay > 0:
        p.actions.append(MarkScaleDown(template, p.now + timedelta(seconds=delay)))
        p.timers.append(float(delay))
    elif rs.scale_down_deadline is not None and rs.scale_down_deadline > p.now:
        p.timers.append((rs.scale_down_deadline - p.now).total_seconds())
    else:
        p.actions.append(ScaleTemplateReplicaSet(template, 0))


# --- analyses -----------------------------------------------------------------------------------------------

_TEMPLATE_REF = re.compile(r"\{\{\s*templates\.([A-Za-z0-9_.\-]+?)\.(podTemplateHash|replicaset\.name)\s*\}\}")
_EXPERIMENT_REF = re.compile(r"\{\{\s*experiment\.(availableAt|finishedAt|name)\s*\}\}")


def _fill(
    text: str, name: str, status: ExperimentStatus, replica_sets: Mapping[str, TemplateReplicaSet]
) -> tuple[str, str | None]:
    """``text`` with the experiment's placeholders filled in, and the first problem (None: all known)."""
    problems: list[str] = []

    def template_ref(match: re.Match[str]) -> str:
        template, what = match.group(1), match.group(2)
        rs = replica_sets.get(template)
        if rs is None:
            problems.append(f"no template {template!r} running in the experiment")
            return ""
        return rs.pod_template_hash if what == "podTemplateHash" else replica_set_name(name, template)

    def experiment_ref(match: re.Match[str]) -> str:
        what = match.group(1)
        if what == "name":
            return name
        if what == "availableAt" and status.available_at is not None:
            return status.available_at
        problems.append(f"experiment.{what} is not known yet")
        return ""

    filled = _EXPERIMENT_REF.sub(experiment_ref, _TEMPLATE_REF.sub(template_ref, text))
    return filled, (problems[0] if problems else None)


def resolve_args(
    name: str, analysis: ExperimentAnalysis, status: ExperimentStatus, replica_sets: Mapping[str, TemplateReplicaSet]
) -> tuple[tuple[str, str], ...] | str:
    """The analysis' argument values with ``{{templates.NAME.podTemplateHash}}``,
    ``{{templates.NAME.replicaset.name}}`` and ``{{experiment.availableAt|name}}`` filled in (Argo's
    ``ResolveExperimentArgsValue``); a message naming the argument when one cannot be. Arguments without an
    inline value are left to the template's own default (``valueFrom`` is not carried over, as in Argo)."""
    values: list[tuple[str, str]] = []
    for index, arg in enumerate(analysis.args):
        if arg.value is None:
            continue
        value, problem = _fill(arg.value, name, status, replica_sets)
        if problem is not None:
            return f"args[{index}] ({arg.name}): {problem}"
        values.append((arg.name, value))
    return tuple(values)


def _analysis(p: _Pass, name: str, analysis: ExperimentAnalysis) -> ExperimentAnalysisRunStatus | None:
    """Argo's ``reconcileAnalysisRun``: start once the templates are available, then follow the run's phase."""
    previous = next((r for r in p.old.analysis_runs if r.name == analysis.name), None)
    if p.old.available_at is None:
        return previous  # no runs before the pods they would measure are available
    if previous is None:
        if p.terminating:
            return None
        run = analysis_run_name(name, analysis.name)
        args = resolve_args(name, analysis, p.old, p.obs.replica_sets)
        if isinstance(args, str):
            return ExperimentAnalysisRunStatus(
                name=analysis.name, analysis_run=run, phase=AnalysisPhase.ERROR, message=args
            )
        p.actions.append(StartExperimentAnalysis(run=run, analysis=analysis, args=args))
        return ExperimentAnalysisRunStatus(name=analysis.name, analysis_run=run, phase=AnalysisPhase.PENDING)
    if previous.phase.completed:
        return previous
    seen = p.obs.analysis_runs.get(previous.analysis_run)
    if seen is None:
        message = f"AnalysisRun {previous.analysis_run} not found"
        return previous.model_copy(update={"phase": AnalysisPhase.ERROR, "message": message})
    if p.terminating and not seen.phase.completed:
        p.actions.append(TerminateExperimentAnalysis(previous.analysis_run))
        return previous
    return previous.model_copy(update={"phase": seen.phase, "message": seen.message or None})


# --- the experiment's phase ---------------------------------------------------------------------------------


def _assess_templates(spec: ExperimentSpec, statuses: Mapping[str, TemplateStatus]) -> tuple[AnalysisPhase, str]:
    worst, message = TemplateStatusCode.SUCCESSFUL, ""
    for template in spec.templates:
        found = statuses.get(template.name)
        code = found.status if found is not None else TemplateStatusCode.PROGRESSING
        if _TEMPLATE_ORDER.index(code) > _TEMPLATE_ORDER.index(worst):
            worst, message = code, (found.message or "") if found is not None else ""
    return _TEMPLATE_TO_PHASE[worst], message


def _assess_analyses(
    spec: ExperimentSpec, runs: Mapping[str, ExperimentAnalysisRunStatus]
) -> tuple[AnalysisPhase, str]:
    worst, message = AnalysisPhase.SUCCESSFUL, ""
    for analysis in spec.analyses:
        found = runs.get(analysis.name)
        phase = found.phase if found is not None else AnalysisPhase.PENDING
        if _ANALYSIS_ORDER.index(phase) > _ANALYSIS_ORDER.index(worst):
            worst, message = phase, (found.message or "") if found is not None else ""
    if worst == AnalysisPhase.SUCCESSFUL and _required_successful(spec, runs):
        return AnalysisPhase.SUCCESSFUL, REQUIRED_COMPLETED
    if worst == AnalysisPhase.PENDING:
        worst = AnalysisPhase.RUNNING  # as the experiment's phase, an analysis not started yet is running
    return worst, message


def _phase(spec: ExperimentSpec, status: ExperimentStatus, now: datetime) -> ExperimentStatus:
    """Argo's ``calculateStatus`` for a Pending or Running experiment."""
    templates = {t.name: t for t in status.template_statuses}
    runs = {r.name: r for r in status.analysis_runs}
    template_phase, template_message = _assess_templates(spec, templates)
    analyses_phase, analyses_message = _assess_analyses(spec, runs)
    update: dict[str, object] = {}
    if template_phase == AnalysisPhase.RUNNING and status.available_at is None:
        update["available_at"] = iso(now)
    has_required = any(a.required_for_completion for a in spec.analyses)
    if template_phase.completed:
        if template_phase == AnalysisPhase.SUCCESSFUL and (analyses_phase.completed or has_required):
            phase, message = analyses_phase, analyses_message
        else:
            phase, message = template_phase, template_message
    elif analyses_phase.unsuccessful or _required_successful(spec, runs):
        phase, message = analyses_phase, analyses_message
    else:
        phase, message = template_phase, template_message
    if phase == AnalysisPhase.SUCCESSFUL and spec.terminate and not message:
        message = TERMINATED
    update.update(phase=phase, message=message or None)
    return status.model_copy(update=update)


def decide_experiment(
    name: str, spec: ExperimentSpec, status: ExperimentStatus | None, obs: ExperimentObservation
) -> ExperimentDecision:
    """One pass over the experiment ``name``: the actions to take and the status to write."""
    old = status or ExperimentStatus()
    p = _Pass(spec=spec, old=old, obs=obs, terminating=is_terminating(spec, old))
    previous = {t.name: t for t in old.template_statuses}
    templates = [_template(p, template, previous.get(template.name)) for template in spec.templates]
    runs = [run for analysis in spec.analyses if (run := _analysis(p, name, analysis)) is not None]
    new = old.model_copy(update={"template_statuses": templates, "analysis_runs": runs})
    if not old.phase.completed:
        new = _phase(spec, new, obs.now)
    if not new.phase.completed:
        remaining = _remaining(spec, new, obs.now)
        if remaining is not None and remaining > 0:
            # Wake when the duration ends; once it has, what it waits on (a required analysis, a template)
            # brings its own wake-up: a tiny timer here would spin the pass loop until then.
            p.timers.append(remaining + 0.001)
    if new.phase.completed and not old.phase.completed:
        p.timers.append(0.0)  # finished: look again at once to scale down and stop the runs
    elif new.phase.completed and not is_done(new):
        p.timers.append(PROGRESS_POLL)  # scaled down: wait for the pods to go
    if new.available_at is not None and old.available_at is None and spec.analyses:
        p.timers.append(0.0)  # available: the analyses start on the next pass
    return ExperimentDecision(status=new, actions=tuple(p.actions), requeue_after=min(p.timers) if p.timers else None)
