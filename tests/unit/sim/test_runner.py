"""The simulator's loop: outcomes per scenario, when it stops, what it records, and that it is fast and repeatable."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from headway.sim.runner import WAITING_FOR_PROMOTE, Outcome, bump_image, load_rollout, run_scenario, with_image
from headway.sim.scenarios import SCENARIOS, Scenario, scenario
from headway.spec.load import SpecError
from tests.scenarios.harness import blue_green, canary, make_rollout

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "1m"}},
    {"setWeight": 50},
    {"pause": {"duration": "1m"}},
]
ANALYSIS_STEP: dict[str, Any] = {"analysis": {"templates": [{"templateName": "error-rate"}]}}


def test_a_good_routed_canary_is_promoted_through_its_weights() -> None:
    result = run_scenario(canary(STEPS, routed=True), "good")

    assert result.outcome is Outcome.PROMOTED
    weights = [entry.weight for entry in result.timeline]
    assert weights.index(20) < weights.index(50) < weights.index(100)
    assert result.status.stable_rs == result.summary.canary_hash
    assert result.summary.canary_requests > 0
    assert result.summary.steps_completed == len(STEPS)


def test_a_bad_canary_with_analysis_is_aborted_and_scaled_down() -> None:
    result = run_scenario(canary([{"setWeight": 20}, ANALYSIS_STEP, {"setWeight": 50}], routed=True), "bad")

    assert result.outcome is Outcome.ABORTED
    assert "RolloutAborted" in result.reasons()
    assert result.timeline[-1].weight == 0
    canary_rows = [row for row in result.timeline[-1].revisions if row.role == "canary"]
    assert all(row.replicas == 0 for row in canary_rows)
    assert result.summary.failed_requests > 0


def test_a_bad_canary_nobody_measures_is_promoted() -> None:
    result = run_scenario(canary([{"setWeight": 50}, {"pause": {"duration": 60}}]), "bad")

    assert result.outcome is Outcome.PROMOTED
    assert result.summary.failed_requests > 0.2 * result.summary.canary_requests


def test_an_indefinite_pause_stops_the_simulation_waiting_for_promote() -> None:
    result = run_scenario(canary([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]), "good")

    assert result.outcome is Outcome.PAUSED
    assert result.summary.reason == WAITING_FOR_PROMOTE
    assert result.timeline[-1].phase == "Paused"


def test_a_simulated_user_can_promote_after_a_while() -> None:
    result = run_scenario(canary([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]), "good", auto_promote_after=45)

    assert result.outcome is Outcome.PROMOTED
    assert result.summary.promotions == 1
    promoted_at = next(at for at, event in result.events if event.reason == "UserPromoted")
    paused_at = next(entry.at for entry in result.timeline if entry.phase == "Paused")
    assert promoted_at - paused_at == pytest.approx(45)


def test_flaky_analysis_pauses_then_the_user_promotes() -> None:
    steps = [{"setWeight": 20}, ANALYSIS_STEP, {"setWeight": 50}, ANALYSIS_STEP]
    result = run_scenario(canary(steps, routed=True), "flaky")

    assert result.outcome is Outcome.PROMOTED
    assert result.summary.promotions == 1
    assert "Inconclusive" in {phase for entry in result.timeline for _, phase in entry.analyses}


def test_a_crashlooping_canary_hits_the_progress_deadline() -> None:
    result = run_scenario(canary(STEPS, progressDeadlineSeconds=120), "crashloop")

    assert result.outcome is Outcome.DEGRADED
    assert "ProgressDeadlineExceeded" in result.reasons()
    assert result.summary.duration_seconds == pytest.approx(120, abs=10)


def test_a_crashlooping_canary_is_aborted_when_the_deadline_aborts() -> None:
    result = run_scenario(canary(STEPS, progressDeadlineSeconds=120, progressDeadlineAbort=True), "crashloop")

    assert result.outcome is Outcome.ABORTED


def test_a_slow_canary_is_promoted_later_than_a_good_one() -> None:
    rollout = canary([{"setWeight": 20}, ANALYSIS_STEP, {"setWeight": 50}], routed=True)

    good, slow = run_scenario(rollout, "good"), run_scenario(rollout, "slow")

    assert slow.outcome is Outcome.PROMOTED
    assert slow.summary.duration_seconds > good.summary.duration_seconds


def test_blue_green_with_auto_promotion_is_promoted() -> None:
    result = run_scenario(blue_green(), "good")

    assert result.outcome is Outcome.PROMOTED
    assert result.platform.services(result.rollout)["web-active"] == result.summary.canary_hash


def test_the_time_limit_stops_a_long_story() -> None:
    result = run_scenario(canary([{"setWeight": 20}, {"pause": {"duration": "1h"}}]), "good", time_limit=600)

    assert result.outcome is Outcome.TIMED_OUT
    assert result.summary.duration_seconds == pytest.approx(600)


def test_the_timeline_records_changes_only() -> None:
    result = run_scenario(canary(STEPS, routed=True), "good")

    for before, after in zip(result.timeline, result.timeline[1:], strict=False):
        assert after.events or after.state() != before.state()
    assert result.summary.passes > len(result.timeline) / 2


def test_runs_are_repeatable_and_serialise_to_json() -> None:
    first = run_scenario(canary(STEPS, routed=True), "bad").as_dict()
    second = run_scenario(canary(STEPS, routed=True), "bad").as_dict()

    assert first == second
    document = json.loads(json.dumps(first))
    assert set(document) == {"timeline", "summary"}
    assert document["summary"]["outcome"] in {outcome.value for outcome in Outcome}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_runs_a_whole_rollout_well_under_a_second(name: str) -> None:
    rollout = canary([{"setWeight": 20}, ANALYSIS_STEP, {"setWeight": 50}, {"pause": {"duration": "5m"}}], routed=True)

    started = time.perf_counter()
    result = run_scenario(rollout, name)

    assert time.perf_counter() - started < 1.0
    assert result.outcome is not Outcome.TIMED_OUT


def test_a_rollout_by_workload_reference_gets_a_template_to_change() -> None:
    rollout = make_rollout({"canary": {"steps": [{"setWeight": 50}]}}).model_copy()
    spec = rollout.spec.model_copy(
        update={"template": None, "workload_ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    )

    result = run_scenario(rollout.model_copy(update={"spec": spec}), "good")

    assert result.outcome is Outcome.PROMOTED


@pytest.mark.parametrize(
    ("image", "bumped"),
    [
        ("app:1.4.2", "app:1.5.0"),
        ("ghcr.io/x/app:v2.0.9", "ghcr.io/x/app:v2.1.0"),
        ("app:latest", "app:latest-next"),
        ("app", "app:next"),
        ("localhost:5000/app", "localhost:5000/app:next"),
    ],
)
def test_the_new_image_bumps_the_version(image: str, bumped: str) -> None:
    assert bump_image(image) == bumped


def test_only_the_first_container_changes() -> None:
    template = {"spec": {"containers": [{"name": "app", "image": "app:1.0.0"}, {"name": "proxy", "image": "p:1"}]}}

    changed = with_image(template, "app:9")

    assert [c["image"] for c in changed["spec"]["containers"]] == ["app:9", "p:1"]
    assert template["spec"]["containers"][0]["image"] == "app:1.0.0"


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: good, bad"):
        scenario("sunny")


def test_a_custom_scenario_can_be_passed_as_is() -> None:
    custom = Scenario(name="custom", story="a quiet day", requests_per_second=1)

    result = run_scenario(canary([{"setWeight": 50}]), custom)

    assert result.summary.scenario == "custom"
    assert result.summary.total_requests < 1000


def test_a_file_with_errors_raises_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web}\n"
        "spec:\n  strategy:\n    canary:\n      steps:\n        - setWeight: 150\n"
    )

    with pytest.raises(SpecError) as raised:
        load_rollout(path)

    assert any("setWeight" in problem.path for problem in raised.value.problems)


def test_a_file_without_a_rollout_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n")

    with pytest.raises(SpecError, match="no Rollout"):
        load_rollout(path)
