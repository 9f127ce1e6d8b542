"""The shipped examples under every scenario, through the simulator (engine + core + fakes, virtual time).

These are the stories a user designs steps with: a healthy release is promoted, a bad one with analysis is
rolled back before most users see it, a crash-looping one never receives traffic.
"""

from __future__ import annotations

import pytest

from tests.scenarios.harness import EXAMPLES, Outcome, blue_green, canary, run_scenario

TRAFFIC_ANALYSIS = EXAMPLES / "canary-traffic-analysis.yaml"
BLUE_GREEN = EXAMPLES / "bluegreen-preview-analysis.yaml"
BASIC = EXAMPLES / "canary-basic.yaml"
HEADER = EXAMPLES / "canary-header-route.yaml"


def test_healthy_release_with_analysis_is_promoted_without_a_human() -> None:
    result = run_scenario(TRAFFIC_ANALYSIS, "good", auto_promote_after=None)
    assert result.outcome is Outcome.PROMOTED
    assert result.summary.steps_completed == result.summary.steps
    assert "RolloutAborted" not in result.reasons()


def test_bad_release_with_analysis_is_rolled_back_early() -> None:
    result = run_scenario(TRAFFIC_ANALYSIS, "bad", auto_promote_after=None)
    assert result.outcome is Outcome.ABORTED
    assert result.status.canary.weights is not None
    assert result.status.canary.weights.canary.weight == 0
    # Caught while the canary held a small share: far fewer canary requests than the stable served.
    assert result.summary.canary_requests < 0.2 * result.summary.total_requests
    assert result.summary.steps_completed < result.summary.steps


def test_crashlooping_canary_gets_no_traffic_and_hits_the_deadline() -> None:
    result = run_scenario(TRAFFIC_ANALYSIS, "crashloop", auto_promote_after=None)
    assert result.outcome in (Outcome.DEGRADED, Outcome.ABORTED)
    assert result.summary.canary_requests == 0
    assert "ProgressDeadlineExceeded" in result.reasons()


def test_slow_release_still_promotes_but_takes_longer() -> None:
    good = run_scenario(TRAFFIC_ANALYSIS, "good", auto_promote_after=None)
    slow = run_scenario(TRAFFIC_ANALYSIS, "slow", auto_promote_after=None)
    assert slow.outcome is Outcome.PROMOTED
    assert slow.summary.duration_seconds > good.summary.duration_seconds


def test_flaky_analysis_pauses_until_a_human_promotes() -> None:
    nobody = run_scenario(TRAFFIC_ANALYSIS, "flaky", auto_promote_after=None)
    assert nobody.outcome is Outcome.PAUSED
    someone = run_scenario(TRAFFIC_ANALYSIS, "flaky")
    assert someone.outcome is Outcome.PROMOTED


def test_blue_green_with_pre_promotion_analysis_waits_for_a_human_then_switches() -> None:
    waiting = run_scenario(BLUE_GREEN, "good", auto_promote_after=None)
    assert waiting.outcome is Outcome.PAUSED
    promoted = run_scenario(BLUE_GREEN, "good", auto_promote_after=60)
    assert promoted.outcome is Outcome.PROMOTED
    bad = run_scenario(BLUE_GREEN, "bad", auto_promote_after=60)
    assert bad.outcome is Outcome.ABORTED
    assert bad.summary.canary_requests == 0  # the preview never took user traffic


@pytest.mark.parametrize("example", [BASIC, HEADER], ids=["basic", "header-route"])
def test_examples_with_manual_gates_promote_when_a_human_does(example: object) -> None:
    result = run_scenario(example, "good", auto_promote_after=30)  # type: ignore[arg-type]
    assert result.outcome is Outcome.PROMOTED


def test_basic_canary_without_analysis_cannot_tell_a_bad_release() -> None:
    # The reason analysis exists: with pauses only, a bad release goes on serving errors until someone looks.
    result = run_scenario(BASIC, "bad", auto_promote_after=None)
    assert result.outcome is Outcome.PAUSED
    assert result.summary.failed_requests > 100


def test_abort_story_scales_the_canary_down_after_the_delay() -> None:
    rollout = canary(
        [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}}, {"setWeight": 60}],
        routed=True,
    )
    result = run_scenario(rollout, "bad", auto_promote_after=None)
    assert result.outcome is Outcome.ABORTED
    rows = result.timeline[-1].revisions
    canary_row = [r for r in rows if r.hash == result.summary.canary_hash]
    assert not canary_row or canary_row[0].replicas == 0


def test_blue_green_auto_promotion_is_quick_and_clean() -> None:
    result = run_scenario(blue_green(), "good", auto_promote_after=None)
    assert result.outcome is Outcome.PROMOTED
    assert result.summary.failed_requests <= result.summary.total_requests * 0.01


JUDGE = EXAMPLES / "canary-judge.yaml"


def test_the_judge_rolls_back_a_bad_canary_after_a_few_dozen_canary_requests() -> None:
    judged = run_scenario(JUDGE, "bad", auto_promote_after=None)
    assert judged.outcome is Outcome.ABORTED
    assert "e-value reached" in judged.status.message  # the judge says why
    scripted = run_scenario(TRAFFIC_ANALYSIS, "bad", auto_promote_after=None)
    # Same bad release, same traffic model: the judge on every 10 s window beats a threshold check by far.
    assert judged.summary.canary_requests * 5 < scripted.summary.canary_requests
    assert judged.summary.failed_requests < scripted.summary.failed_requests


@pytest.mark.parametrize("scenario", ["good", "slow"])
def test_the_judge_never_rolls_back_a_healthy_canary_in_the_simulator(scenario: str) -> None:
    result = run_scenario(JUDGE, scenario, auto_promote_after=None)
    assert result.outcome is Outcome.PROMOTED
    assert "RolloutAborted" not in result.reasons()
