"""No promotion unless the analysis says Successful: the rules of `headway.core.runs`, as tables and as properties.

A step (and a blue/green pre- or post-promotion) run passes only on Successful; Inconclusive pauses; Failed and
Error abort. A background run still going when the steps are done lets the rollout promote only when it is Running
with sound evidence (every deciding metric measured, none in an error streak). Everything runs through `decide`
in virtual time, with the runs' phases (and evidence gaps) scripted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headway.core import actions as a
from headway.core import runs
from headway.core.decide import decide
from headway.core.decision import Decision
from headway.core.observation import Observation, RunState
from headway.spec.status import Phase, RunPhase, RunStatus
from tests.unit.core.driver import World, rollout, started

P = RunPhase
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": 10}},
    {"analysis": {"templates": [{"templateName": "check"}]}},
    {"setWeight": 60},
    {"pause": {"duration": 10}},
]
BACKGROUND = {"templates": [{"templateName": "errors"}]}

Segment = tuple[float, RunPhase, str]
"""A stretch of a run's life: for so many seconds, this phase and this evidence gap ("" for none)."""


def at(segments: list[Segment], age: float) -> tuple[RunPhase, str]:
    """The phase and gap at ``age``; a completed phase is final, as a real run's is."""
    for seconds, phase, gap in segments:
        if age < seconds or phase.completed:
            return phase, gap
        age -= seconds
    _, phase, gap = segments[-1]
    return phase, gap


@dataclass
class Scripted(World):
    """The core test world, with scripted evidence gaps, keeping every observation next to its decision."""

    step_script: list[Segment] = field(default_factory=lambda: [(30, P.RUNNING, ""), (1, P.SUCCESSFUL, "")])
    background_script: list[Segment] = field(default_factory=lambda: [(1, P.RUNNING, "")])
    seen: list[tuple[Observation, Decision]] = field(default_factory=list)

    def observe(self) -> Observation:
        observation = super().observe()
        states: dict[str, RunState] = {}
        for name, state in observation.analysis_runs.items():
            if name in self.terminated:
                states[name] = state
                continue
            script = self.background_script if name.endswith("-background") else self.step_script
            phase, gap = at(script, (self.now - self.runs[name]).total_seconds())
            states[name] = RunState(name=name, phase=phase, evidence_gap=gap if phase == P.RUNNING else "")
        return replace(observation, analysis_runs=states)

    def step(self) -> Decision:
        observation = self.observe()
        decision = decide(self.rollout, self.status, observation)
        for action in decision.actions:
            self.apply(action)
        self.status = decision.status
        self.decisions.append(decision)
        self.seen.append((observation, decision))
        return decision


def world(*, background: bool = True, **scripts: Any) -> Scripted:
    strategy: dict[str, Any] = {"canary": {"steps": STEPS, **({"analysis": BACKGROUND} if background else {})}}
    w = Scripted(rollout=rollout(strategy), **scripts)
    w.run(until=lambda w: w.status.phase == Phase.HEALTHY and w.status.stable_rs == w.new_hash)
    w.seen.clear()
    w.deploy("app:2")
    return w


def over(w: Scripted) -> bool:
    """Promoted, aborted, or paused for a human (not by a timed pause step)."""
    promoted = w.status.stable_rs == w.new_hash
    return promoted or w.status.abort or (w.status.phase == Phase.PAUSED and w.status.controller_pause and _held(w))


def _held(w: Scripted) -> bool:
    return any(c.reason.value.startswith("Inconclusive") for c in w.status.pause_conditions)


def play(w: Scripted, limit: float = 900) -> Scripted:
    end = w.now + timedelta(seconds=limit)
    while w.now < end:
        decision = w.step()
        if over(w):
            return w
        wait = 5.0 if decision.requeue_after is None else min(5.0, decision.requeue_after)
        w.now += timedelta(seconds=wait)
    return w


def promoted_at(w: Scripted) -> Observation | None:
    """The observation of the pass that made the new revision stable (None: it never was)."""
    for observation, decision in w.seen:
        if any(e.reason == "RolloutCompleted" for e in decision.events):
            return observation
    return None


def background_of(observation: Observation) -> RunState | None:
    return next((s for n, s in observation.analysis_runs.items() if n.endswith("-background")), None)


# --- the rule, as a table --------------------------------------------------------------------------------------


def tracked(phase: RunPhase | None, gap: str = "", record: RunPhase = P.RUNNING) -> runs.Tracked:
    seen = RunState(name="bg", phase=phase, evidence_gap=gap) if phase is not None else None
    status = phase if phase is not None else record
    return runs.Tracked(RunStatus(name="bg", status=status), runs._verdict(status), seen)


@pytest.mark.parametrize(
    ("given", "blocker"),
    [
        (tracked(P.SUCCESSFUL), None),
        (tracked(P.RUNNING), None),
        (tracked(P.RUNNING, "metric 'rate' has no measurement yet"), "background analysis run bg: metric 'rate'"),
        (tracked(P.RUNNING, "metric 'rate': its last measurement errored"), "background analysis run bg: metric"),
        (tracked(P.PENDING), "background analysis run bg has not started measuring"),
        (tracked(None, record=P.PENDING), "background analysis run bg has not started measuring"),
        (tracked(None, record=P.RUNNING), "background analysis run bg is not found"),
        (tracked(P.INCONCLUSIVE), "background analysis run bg is Inconclusive"),
        (tracked(P.ERROR), "background analysis run bg is Error"),
        (tracked(P.FAILED), "background analysis run bg is Failed"),
    ],
    ids=[
        "successful",
        "running-sound",
        "running-unmeasured",
        "running-erroring",
        "pending",
        "just-started",
        "missing",
        "inconclusive",
        "error",
        "failed",
    ],
)
def test_what_a_background_run_lets_through_at_promotion(given: runs.Tracked, blocker: str | None) -> None:
    found = runs.promotion_blocker(given)
    if blocker is None:
        assert found is None
    else:
        assert found is not None and found.startswith(blocker)


@pytest.mark.parametrize(
    ("phase", "verdict"),
    [
        (P.SUCCESSFUL, runs.Verdict.PASSED),
        (P.RUNNING, runs.Verdict.WAITING),
        (P.PENDING, runs.Verdict.WAITING),
        (P.INCONCLUSIVE, runs.Verdict.INCONCLUSIVE),
        (P.FAILED, runs.Verdict.FAILED),
        (P.ERROR, runs.Verdict.FAILED),
    ],
)
def test_only_successful_passes_a_step(phase: RunPhase, verdict: runs.Verdict) -> None:
    assert runs._verdict(phase) is verdict


# --- stories -----------------------------------------------------------------------------------------------------


def test_a_background_run_that_has_not_started_holds_the_promotion() -> None:
    w = play(world(background_script=[(1, P.PENDING, "")]), limit=300)

    assert w.status.stable_rs != w.new_hash and not w.status.abort
    assert "has not started measuring" in w.status.message


def test_a_background_run_in_an_error_streak_holds_the_promotion_until_it_errors_then_aborts() -> None:
    streak = "metric 'rate': its last measurement errored: the provider failed"
    w = play(world(background_script=[(120, P.RUNNING, streak), (1, P.ERROR, "")]))

    assert promoted_at(w) is None
    assert w.status.abort and w.status.phase == Phase.DEGRADED
    waits = [d.status.message for _, d in w.seen if streak in d.status.message]
    assert waits  # it said why it waited


def test_a_background_run_that_measures_soundly_again_lets_the_rollout_through() -> None:
    unmeasured = "metric 'rate' has no measurement yet"
    w = play(world(background_script=[(120, P.RUNNING, unmeasured), (1, P.RUNNING, "")]))

    observation = promoted_at(w)
    assert observation is not None
    state = background_of(observation)
    assert state is not None and state.phase == P.RUNNING and state.evidence_gap == ""
    assert any(isinstance(x, a.TerminateAnalysisRun) for x in w.log)  # stopped at promotion, as in Argo


def test_a_background_run_inconclusive_after_the_steps_pauses_instead_of_promoting() -> None:
    # The verdict arrives while the canary is still scaling up after its last step (Argo #3850 promoted there).
    w = play(world(background_script=[(60, P.RUNNING, ""), (1, P.INCONCLUSIVE, "")], startup=80.0))

    assert promoted_at(w) is None
    assert w.status.phase == Phase.PAUSED and not w.status.abort


@pytest.mark.parametrize("verdict", [P.FAILED, P.ERROR])
def test_a_step_run_that_fails_or_errors_aborts(verdict: RunPhase) -> None:
    w = play(world(background=False, step_script=[(30, P.RUNNING, ""), (1, verdict, "")]))

    assert promoted_at(w) is None and w.status.abort


# --- the property ---------------------------------------------------------------------------------------------------

phases = st.sampled_from(list(RunPhase))
gaps = st.sampled_from(["", "", "metric 'rate' has no measurement yet", "metric 'rate': its last measurement errored"])
segments = st.lists(st.tuples(st.sampled_from([5.0, 20.0, 60.0, 200.0]), phases, gaps), min_size=1, max_size=5)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step_script=segments, background_script=segments, background=st.booleans(), startup=st.sampled_from([1.0, 40.0]))
def test_no_promotion_unless_the_analysis_is_successful(
    step_script: list[Segment], background_script: list[Segment], background: bool, startup: float
) -> None:
    w = play(
        world(background=background, step_script=step_script, background_script=background_script, startup=startup)
    )

    step_runs = [x.name for x in w.log if isinstance(x, a.StartAnalysisRun) and x.kind is a.RunKind.STEP]
    passed_step = False
    for observation, decision in w.seen:
        completed = [e for e in decision.events if e.reason == "RolloutStepCompleted" and "analysis" in e.message]
        if completed:
            # the analysis step passed this pass: its run said Successful in this very observation
            states = [observation.analysis_runs.get(name) for name in step_runs]
            assert any(s is not None and s.phase == P.SUCCESSFUL for s in states), (states, decision.status.message)
            passed_step = True
    promotion = promoted_at(w)
    if promotion is None:
        return
    assert passed_step, "promoted without passing the analysis step"
    if background:
        state = background_of(promotion)
        assert state is not None, "promoted with no background run observed"
        assert state.phase == P.SUCCESSFUL or (state.phase == P.RUNNING and not state.evidence_gap), state
    # nothing that aborts was ever seen before the promotion
    for earlier, _ in w.seen:
        if earlier is promotion:
            break
        assert not any(s.phase.failed for s in earlier.analysis_runs.values()), earlier.analysis_runs


# --- blue/green: the same rule before and after the switch -----------------------------------------------------

BLUE_GREEN = {"activeService": "web-active", "previewService": "web-preview"}


def run_then(phase: RunPhase) -> Any:
    return lambda name, age: phase if age >= 20 else RunPhase.RUNNING


@pytest.mark.parametrize("phase", list(RunPhase))
def test_blue_green_switches_only_on_a_successful_pre_promotion_run(phase: RunPhase) -> None:
    analysis = {"templates": [{"templateName": "smoke"}]}
    w = started(rollout({"blueGreen": {**BLUE_GREEN, "prePromotionAnalysis": analysis}}), script=run_then(phase))
    old = w.new_hash
    w.deploy("app:2")
    switched: list[str] = []
    end = w.now + timedelta(seconds=600)
    while w.now < end and not w.status.abort:
        w.step()
        switched.append(w.services["web-active"])
        w.now += timedelta(seconds=5)

    assert (w.new_hash in switched) is (phase == P.SUCCESSFUL)
    assert w.status.abort is phase.failed
    if phase == P.INCONCLUSIVE:
        assert w.status.phase == Phase.PAUSED
    assert switched[-1] == (w.new_hash if phase == P.SUCCESSFUL else old)


@pytest.mark.parametrize("phase", list(RunPhase))
def test_blue_green_calls_the_new_revision_stable_only_on_a_successful_post_promotion_run(phase: RunPhase) -> None:
    analysis = {"templates": [{"templateName": "errors"}]}
    w = started(rollout({"blueGreen": {**BLUE_GREEN, "postPromotionAnalysis": analysis}}), script=run_then(phase))
    old = w.new_hash
    w.deploy("app:2")
    end = w.now + timedelta(seconds=600)
    while w.now < end and not w.status.abort:
        w.step()
        w.now += timedelta(seconds=5)

    assert (w.status.stable_rs == w.new_hash) is (phase == P.SUCCESSFUL)
    assert w.status.abort is phase.failed
    if phase != P.SUCCESSFUL:
        assert w.status.stable_rs == old


def test_pausing_a_rollout_held_at_promotion_by_its_background_run_does_not_promote_it() -> None:
    """`_background` is not consulted while paused: promoting then went over a run in an error streak."""
    streak = "metric 'rate': its last measurement errored: the provider failed"
    w = play(world(background_script=[(10_000, P.RUNNING, streak)]), limit=400)
    assert w.status.stable_rs != w.new_hash and streak in w.status.message  # held at promotion by the run
    w.rollout = w.rollout.model_copy(update={"spec": w.rollout.spec.model_copy(update={"paused": True})})

    for _ in range(5):
        w.step()
        w.now += timedelta(seconds=5)

    assert promoted_at(w) is None
    assert w.status.phase == Phase.PAUSED and w.status.message == "manually paused"
