"""Following the AnalysisRuns and Experiments a rollout waits on: start once, read the phase, name uniquely.

A run's verdict reaches the rollout as a `RunPhase`, and the rules for what it lets the rollout do are here, the
same for every strategy (fail closed; Argo's semantics where Argo has them):

=================  ====================================  ==============================================
run phase          a step / pre- / post-promotion run    a background run, once the steps are done
=================  ====================================  ==============================================
Successful         passes                                promotes
Running            waits                                 promotes only with sound evidence (see below)
Pending, missing   waits                                 waits
Inconclusive       pauses; passes only once a human      pauses; a resume measures afresh
                   resumes (promote)
Failed, Error      abort the update                      abort the update
=================  ====================================  ==============================================

Only Successful passes a step on its own. A background run that is still Running when the steps are done is
terminated on promotion, as in Argo, but only if every metric that decides has been measured and none's latest
measurement errored (`RunState.evidence_gap`): Argo would promote over a run that never measured or whose
provider keeps failing; Headway waits until the run measures, or until its errors reach ``consecutiveErrorLimit``
and the Error run aborts the update. Names are derived from the rollout, revision and purpose, like Argo's
``<rollout>-<hash>-<revision>-<step>``; a retried rollout gets ``.1``, ``.2`` suffixes so that the failed run
stays readable next to the new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from headway.core.actions import RunKind, StartAnalysisRun, StartExperiment, TerminateAnalysisRun, TerminateExperiment
from headway.core.decision import EventType
from headway.core.observation import RunState
from headway.core.passes import Pass
from headway.spec.rollout import RolloutAnalysis, RolloutExperimentStep
from headway.spec.status import RunPhase, RunStatus


class Verdict(StrEnum):
    """What a run means for the rollout this pass."""

    WAITING = "Waiting"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


def base_name(p: Pass, label: str) -> str:
    number = p.revision_number(p.new_hash)
    return f"{p.rollout.name}-{p.new_hash}-{number}-{label}"


def belongs(record: RunStatus | None, base: str) -> bool:
    """True when ``record`` is a run started for ``base`` (any retry suffix)."""
    return record is not None and (record.name == base or record.name.startswith(base + "."))


def unique_name(base: str, existing: Mapping[str, RunState]) -> str:
    if base not in existing:
        return base
    suffix = 1
    while f"{base}.{suffix}" in existing:
        suffix += 1
    return f"{base}.{suffix}"


@dataclass(frozen=True)
class Tracked:
    record: RunStatus
    verdict: Verdict
    observed: RunState | None = None
    """The run as observed this pass (None: started this pass, or not found)."""


def _verdict(phase: RunPhase) -> Verdict:
    if phase == RunPhase.SUCCESSFUL:
        return Verdict.PASSED
    if phase.failed:
        return Verdict.FAILED
    if phase == RunPhase.INCONCLUSIVE:
        return Verdict.INCONCLUSIVE
    return Verdict.WAITING


def track_analysis(
    p: Pass, record: RunStatus | None, *, label: str, kind: RunKind, analysis: RolloutAnalysis
) -> Tracked:
    """Start the analysis run for ``label`` unless ``record`` already is one; return its current verdict."""
    base = base_name(p, label)
    if not belongs(record, base) or record is None:
        name = unique_name(base, p.obs.analysis_runs)
        stable = p.status.stable_rs
        p.act(StartAnalysisRun(name=name, kind=kind, analysis=analysis, hash=p.new_hash, stable_hash=stable))
        p.event(EventType.NORMAL, "AnalysisRunRunning", f"Started {kind.value} analysis run {name}")
        return Tracked(RunStatus(name=name, status=RunPhase.PENDING), Verdict.WAITING)
    tracked = _observe(record, p.obs.analysis_runs.get(record.name))
    _announce_end(p, record, tracked.record)
    return tracked


def _announce_end(p: Pass, before: RunStatus, after: RunStatus) -> None:
    """One event when a run reaches its final phase (``AnalysisRunFailed`` etc., as Argo names them).

    Emitted on the transition only, read from the rollout's own record of the run, so a run that stays Failed
    for many passes is announced once; notifications subscribe to these reasons (analysis failed is one of the
    moments a person wants to hear about, separately from the abort it causes).
    """
    if before.status.completed or not after.status.completed:
        return
    kind = EventType.NORMAL if after.status == RunPhase.SUCCESSFUL else EventType.WARNING
    detail = f": {after.message}" if after.message else ""
    p.event(
        kind,
        f"AnalysisRun{after.status.value}",
        f"Analysis run {after.name} {after.status.value} (was {before.status.value}){detail}",
    )


def track_experiment(p: Pass, record: RunStatus | None, *, label: str, experiment: RolloutExperimentStep) -> Tracked:
    base = base_name(p, label)
    if not belongs(record, base) or record is None:
        name = unique_name(base, p.obs.experiments)
        p.act(StartExperiment(name=name, experiment=experiment, canary_hash=p.new_hash, stable_hash=p.status.stable_rs))
        p.event(EventType.NORMAL, "ExperimentRunning", f"Started experiment {name}")
        return Tracked(RunStatus(name=name, status=RunPhase.PENDING), Verdict.WAITING)
    return _observe(record, p.obs.experiments.get(record.name))


def _observe(record: RunStatus, seen: RunState | None) -> Tracked:
    if seen is None:
        return Tracked(record, _verdict(record.status))
    updated = record.model_copy(update={"status": seen.phase, "message": seen.message})
    return Tracked(updated, _verdict(seen.phase), seen)


def promotion_blocker(tracked: Tracked) -> str | None:
    """Why a background run keeps the rollout from being promoted once its steps are done (None: it does not).

    See the module docstring: Successful promotes; Running promotes when it has sound evidence; anything else
    (not found, Pending, a gap in the evidence, or a verdict that aborts or pauses) holds the promotion."""
    name = tracked.record.name
    if tracked.verdict == Verdict.PASSED:
        return None
    if tracked.verdict != Verdict.WAITING:
        return f"background analysis run {name} is {tracked.record.status.value}"
    seen = tracked.observed
    if seen is None:
        if tracked.record.status == RunPhase.PENDING:
            return f"background analysis run {name} has not started measuring"
        return f"background analysis run {name} is not found"
    if seen.phase != RunPhase.RUNNING:
        return f"background analysis run {name} has not started measuring"
    if seen.evidence_gap:
        return f"background analysis run {name}: {seen.evidence_gap}"
    return None


def terminate_analysis(p: Pass, record: RunStatus | None) -> None:
    """Stop a run the rollout no longer needs (it keeps its measurements; only running runs are stopped)."""
    if record is not None and not record.status.completed:
        seen = p.obs.analysis_runs.get(record.name)
        if seen is None or not seen.phase.completed:
            p.act(TerminateAnalysisRun(name=record.name))


def terminate_experiment(p: Pass, record: RunStatus | None) -> None:
    if record is not None and not record.status.completed:
        seen = p.obs.experiments.get(record.name)
        if seen is None or not seen.phase.completed:
            p.act(TerminateExperiment(name=record.name))


def failure_message(what: str, tracked: Tracked) -> str:
    detail = f": {tracked.record.message}" if tracked.record.message else ""
    return f"{what} {tracked.record.name} {tracked.record.status.value}{detail}"
