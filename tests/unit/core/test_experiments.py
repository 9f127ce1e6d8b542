"""Experiments in virtual time: templates become available, durations pass, analyses judge, templates go away.

A small world plays the cluster: ReplicaSets the core creates become available ``ready_after`` seconds after they
are scaled (never, when None), AnalysisRuns follow a script of (seconds after start, phase). Time jumps by the
decision's ``requeue_after``, so an experiment of minutes runs in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway.core.experiments import (
    PROGRESS_POLL,
    REQUIRED_COMPLETED,
    TERMINATED,
    CreateTemplateReplicaSet,
    ExperimentDecision,
    ExperimentObservation,
    MarkScaleDown,
    ScaleTemplateReplicaSet,
    StartExperimentAnalysis,
    TemplateReplicaSet,
    TerminateExperimentAnalysis,
    decide_experiment,
    resolve_args,
)
from headway.core.observation import RunState
from headway.spec.analysis import AnalysisPhase
from headway.spec.experiment import ExperimentSpec, ExperimentStatus, TemplateStatusCode

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POD = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}]}}


def spec(**fields: Any) -> ExperimentSpec:
    body: dict[str, Any] = {
        "templates": [
            {"name": "baseline", "replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": POD},
            {"name": "canary", "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": POD},
        ],
        "scaleDownDelaySeconds": 0,
        **fields,
    }
    return ExperimentSpec.model_validate(body)


@dataclass
class World:
    """The cluster as the core would see it, moved by the core's actions."""

    ready_after: float | None = 5.0
    scripts: dict[str, list[tuple[float, AnalysisPhase]]] = field(default_factory=dict)
    now: datetime = T0
    replica_sets: dict[str, TemplateReplicaSet] = field(default_factory=dict)
    scaled_at: dict[str, datetime] = field(default_factory=dict)
    runs: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    """run name → (analysis name, started at)."""
    terminated: set[str] = field(default_factory=set)
    log: list[object] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    """``now`` of each pass, in order."""

    def observe(self) -> ExperimentObservation:
        sets = {}
        for name, rs in self.replica_sets.items():
            up = self.ready_after is not None and self.now >= self.scaled_at[name] + timedelta(seconds=self.ready_after)
            count = rs.replicas if up or rs.replicas == 0 else 0
            sets[name] = TemplateReplicaSet(
                name=rs.name,
                pod_template_hash=rs.pod_template_hash,
                replicas=rs.replicas,
                current=rs.replicas,
                ready=count,
                available=count,
                scale_down_deadline=rs.scale_down_deadline,
            )
        return ExperimentObservation(now=self.now, replica_sets=sets, analysis_runs=self._runs())

    def _runs(self) -> dict[str, RunState]:
        states = {}
        for run, (analysis, started) in self.runs.items():
            phase = AnalysisPhase.RUNNING
            for after, scripted in self.scripts.get(analysis, []):
                if self.now >= started + timedelta(seconds=after):
                    phase = scripted
            if run in self.terminated and not phase.completed:
                phase = AnalysisPhase.SUCCESSFUL
            states[run] = RunState(name=run, phase=phase)
        return states

    def next_event(self) -> float:
        """Seconds until a scripted run changes phase (inf: none pending)."""
        ahead = [
            (started + timedelta(seconds=after) - self.now).total_seconds()
            for analysis, started in self.runs.values()
            for after, _ in self.scripts.get(analysis, [])
        ]
        return min((a for a in ahead if a > 0), default=float("inf"))

    def apply(self, decision: ExperimentDecision) -> None:
        for action in decision.actions:
            self.log.append(action)
            match action:
                case CreateTemplateReplicaSet(template=t, replicas=n):
                    self.replica_sets[t] = TemplateReplicaSet(name=f"ex-{t}", pod_template_hash=f"h{t}", replicas=n)
                    self.scaled_at[t] = self.now
                case ScaleTemplateReplicaSet(template=t, replicas=n):
                    rs = self.replica_sets[t]
                    self.replica_sets[t] = TemplateReplicaSet(rs.name, rs.pod_template_hash, n, rs.current)
                    self.scaled_at[t] = self.now
                case MarkScaleDown(template=t, deadline=d):
                    rs = self.replica_sets[t]
                    self.replica_sets[t] = TemplateReplicaSet(rs.name, rs.pod_template_hash, rs.replicas, 0, 0, 0, d)
                case StartExperimentAnalysis(run=run, analysis=analysis):
                    self.runs[run] = (analysis.name, self.now)
                case TerminateExperimentAnalysis(run=run):
                    self.terminated.add(run)


def run(experiment: ExperimentSpec, world: World, *, until: float = 3600.0, steps: int = 200) -> list[ExperimentStatus]:
    """Decide, act, jump to the next timer, until finished and scaled down (or ``until`` seconds pass)."""
    status: ExperimentStatus | None = None
    seen: list[ExperimentStatus] = []
    for _ in range(steps):
        decision = decide_experiment("ex", experiment, status, world.observe())
        world.apply(decision)
        status = decision.status
        seen.append(status)
        world.times.append(world.now)
        if decision.done or (world.now - T0).total_seconds() > until:
            return seen
        wait = decision.requeue_after if decision.requeue_after is not None else PROGRESS_POLL
        wait = min(wait, world.next_event())  # a run's change wakes the worker, as its watch event does
        world.now += timedelta(seconds=max(wait, 0.5) if decision.requeue_after != 0 else 0.0)
    raise AssertionError(f"no end after {steps} passes: {status}")


def phases(seen: list[ExperimentStatus]) -> list[AnalysisPhase]:
    out: list[AnalysisPhase] = []
    for status in seen:
        if not out or out[-1] != status.phase:
            out.append(status.phase)
    return out


def available_at(status: ExperimentStatus) -> datetime:
    assert status.available_at is not None
    return datetime.fromisoformat(status.available_at.replace("Z", "+00:00"))


def test_first_pass_creates_every_template_replica_set_at_its_replicas() -> None:
    decision = decide_experiment("ex", spec(duration="1m"), None, ExperimentObservation(now=T0))
    assert decision.actions == (CreateTemplateReplicaSet("baseline", 1), CreateTemplateReplicaSet("canary", 2))
    assert decision.status.phase == AnalysisPhase.PENDING
    assert [t.status for t in decision.status.template_statuses] == [TemplateStatusCode.PROGRESSING] * 2
    assert decision.requeue_after is not None and decision.requeue_after <= PROGRESS_POLL


def test_runs_for_its_duration_after_the_templates_are_available_then_scales_down() -> None:
    world = World(ready_after=5.0)
    seen = run(spec(duration="1m"), world)
    assert phases(seen) == [AnalysisPhase.PENDING, AnalysisPhase.RUNNING, AnalysisPhase.SUCCESSFUL]
    last = seen[-1]
    started = available_at(last)
    assert started >= T0 + timedelta(seconds=5)
    ended = next(i for i, s in enumerate(seen) if s.phase == AnalysisPhase.SUCCESSFUL)
    assert started + timedelta(seconds=60) <= world.times[ended] <= started + timedelta(seconds=61)
    assert [t.status for t in last.template_statuses] == [TemplateStatusCode.SUCCESSFUL] * 2
    assert {rs.replicas for rs in world.replica_sets.values()} == {0}
    assert [t.replicas for t in last.template_statuses] == [0, 0]


def test_the_duration_ends_exactly_when_due_not_a_poll_later() -> None:
    world = World(ready_after=0.0)
    experiment = spec(duration="90s")
    status: ExperimentStatus | None = None
    for _ in range(3):  # create, become Running (availableAt), then wait
        decision = decide_experiment("ex", experiment, status, world.observe())
        world.apply(decision)
        status = decision.status
    assert status is not None and status.phase == AnalysisPhase.RUNNING
    wait = decision.requeue_after
    assert wait is not None and wait == pytest.approx(90.0, abs=0.01)
    world.now += timedelta(seconds=wait)
    decision = decide_experiment("ex", experiment, status, world.observe())
    assert decision.status.phase == AnalysisPhase.SUCCESSFUL


def test_analyses_start_only_once_the_templates_are_available() -> None:
    experiment = spec(duration="5m", analyses=[{"name": "errors", "templateName": "error-rate"}])
    world = World(ready_after=30.0)
    seen = run(experiment, world)
    first = next(i for i, s in enumerate(seen) if s.analysis_runs)
    assert seen[first - 1].available_at is not None
    assert seen[first].analysis_runs[0].analysis_run == "ex-errors"
    started = [a for a in world.log if isinstance(a, StartExperimentAnalysis)]
    assert [a.run for a in started] == ["ex-errors"]
    assert seen[-1].phase == AnalysisPhase.SUCCESSFUL
    assert world.terminated == {"ex-errors"}, "a run still going when the duration ends is terminated"


@pytest.mark.parametrize("verdict", [AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE])
def test_an_unsuccessful_analysis_ends_the_experiment_with_its_verdict(verdict: AnalysisPhase) -> None:
    experiment = spec(
        duration="10m",
        analyses=[
            {"name": "errors", "templateName": "error-rate"},
            {"name": "latency", "templateName": "latency"},
        ],
    )
    world = World(ready_after=1.0, scripts={"errors": [(20.0, verdict)]})
    seen = run(experiment, world)
    assert phases(seen) == [AnalysisPhase.PENDING, AnalysisPhase.RUNNING, verdict]
    assert available_at(seen[-1]) + timedelta(minutes=10) > world.now, "ended before the duration"
    assert {r.name: r.phase for r in seen[-1].analysis_runs}["errors"] == verdict
    assert "ex-latency" in world.terminated
    assert {rs.replicas for rs in world.replica_sets.values()} == {0}


def test_without_duration_it_ends_when_the_required_analyses_succeed() -> None:
    experiment = spec(
        analyses=[
            {"name": "smoke", "templateName": "smoke", "requiredForCompletion": True},
            {"name": "watch", "templateName": "watch"},
        ]
    )
    world = World(ready_after=1.0, scripts={"smoke": [(45.0, AnalysisPhase.SUCCESSFUL)]})
    seen = run(experiment, world)
    assert seen[-1].phase == AnalysisPhase.SUCCESSFUL
    assert seen[-1].message == REQUIRED_COMPLETED
    assert "ex-watch" in world.terminated
    assert world.now < T0 + timedelta(minutes=5)


def test_without_duration_or_required_analyses_it_runs_until_terminated() -> None:
    experiment = spec(analyses=[{"name": "watch", "templateName": "watch"}])
    world = World(ready_after=1.0)
    seen = run(experiment, world, until=7200.0, steps=2000)
    assert seen[-1].phase == AnalysisPhase.RUNNING
    terminated = experiment.model_copy(update={"terminate": True})
    status = seen[-1]
    for _ in range(5):
        decision = decide_experiment("ex", terminated, status, world.observe())
        world.apply(decision)
        status = decision.status
        world.now += timedelta(seconds=1)
    assert status.phase == AnalysisPhase.SUCCESSFUL
    assert status.message == TERMINATED
    assert world.terminated == {"ex-watch"}
    assert {rs.replicas for rs in world.replica_sets.values()} == {0}


def test_templates_that_never_become_available_fail_at_the_progress_deadline() -> None:
    world = World(ready_after=None)
    seen = run(spec(duration="1m", progressDeadlineSeconds=120), world)
    assert phases(seen) == [AnalysisPhase.PENDING, AnalysisPhase.FAILED]
    assert seen[-1].message == "Template 'baseline' exceeded its progressDeadlineSeconds (120)"
    assert seen[-1].available_at is None
    failed_at = world.times[next(i for i, s in enumerate(seen) if s.phase == AnalysisPhase.FAILED)]
    assert T0 + timedelta(seconds=120) < failed_at <= T0 + timedelta(seconds=120 + PROGRESS_POLL + 1)
    assert {rs.replicas for rs in world.replica_sets.values()} == {0}


def test_scale_down_waits_for_the_delay_recorded_on_the_replica_set() -> None:
    world = World(ready_after=0.0)
    seen = run(spec(duration="30s", scaleDownDelaySeconds=45), world)
    marks = [a for a in world.log if isinstance(a, MarkScaleDown)]
    scales = [a for a in world.log if isinstance(a, ScaleTemplateReplicaSet) and a.replicas == 0]
    assert {m.template for m in marks} == {"baseline", "canary"}
    assert {s.template for s in scales} == {"baseline", "canary"}
    assert seen[-1].phase == AnalysisPhase.SUCCESSFUL
    assert world.now >= marks[0].deadline


def test_a_completed_experiment_changes_nothing_more() -> None:
    world = World(ready_after=0.0)
    experiment = spec(duration="10s")
    seen = run(experiment, world)
    again = decide_experiment("ex", experiment, seen[-1], world.observe())
    assert again.status == seen[-1]
    assert again.actions == ()
    assert again.done


def test_args_name_the_templates_replica_sets_and_hashes() -> None:
    experiment = spec(
        analyses=[
            {
                "name": "compare",
                "templateName": "compare",
                "args": [
                    {"name": "baseline-hash", "value": "{{templates.baseline.podTemplateHash}}"},
                    {"name": "canary-rs", "value": "{{ templates.canary.replicaset.name }}"},
                    {"name": "plain", "value": "x"},
                    {"name": "secret", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
            }
        ]
    )
    sets = {
        "baseline": TemplateReplicaSet("ex-baseline", "abc", 1),
        "canary": TemplateReplicaSet("ex-canary", "def", 2),
    }
    args = resolve_args("ex", experiment.analyses[0], ExperimentStatus(), sets)
    assert args == (("baseline-hash", "abc"), ("canary-rs", "ex-canary"), ("plain", "x"))


def test_an_argument_naming_an_unknown_template_is_an_errored_analysis() -> None:
    experiment = spec(
        duration="1m",
        analyses=[
            {
                "name": "compare",
                "templateName": "compare",
                "args": [{"name": "h", "value": "{{templates.nope.podTemplateHash}}"}],
            }
        ],
    )
    world = World(ready_after=0.0)
    seen = run(experiment, world)
    assert seen[-1].phase == AnalysisPhase.ERROR
    assert seen[-1].message is not None and "args[0] (h): no template 'nope'" in seen[-1].message
    assert not world.runs


@pytest.mark.parametrize("required", [True, False])
def test_past_its_duration_while_an_analysis_still_runs_it_does_not_spin(required: bool) -> None:
    analysis = {"name": "smoke", "templateName": "smoke", "requiredForCompletion": required}
    experiment = spec(duration="30s", analyses=[analysis])
    world = World(ready_after=1.0, scripts={"smoke": [(300.0, AnalysisPhase.SUCCESSFUL)]})
    status: ExperimentStatus | None = None
    late_waits = []
    for _ in range(100):
        decision = decide_experiment("ex", experiment, status, world.observe())
        world.apply(decision)
        status = decision.status
        if decision.done:
            break
        if world.now > T0 + timedelta(seconds=40) and not status.phase.completed:
            late_waits.append(decision.requeue_after)
        wait = decision.requeue_after if decision.requeue_after is not None else PROGRESS_POLL
        world.now += timedelta(seconds=min(max(wait, 0.0), world.next_event()) or 0.0)
    assert all(w is None or w >= 1.0 for w in late_waits), late_waits[:5]
