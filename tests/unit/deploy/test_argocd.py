"""Argo CD's view of Headway: the Lua health checks and actions in deploy/argocd/, run in Lua 5.1 as Argo CD runs them.

The statuses are the engine's own, written by whole rollouts run in virtual time (the same `run_pass` the
controller runs), stamped with ``observedGeneration`` as the controller stamps it. Each action must change the
object exactly as the CLI's control (`headway.core.commands`) does, and refuse what the CLI refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lupa.lua51 import LuaError

from headway.core import commands
from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus
from tests.scenarios.harness import blue_green, canary, run_scenario
from tests.unit.deploy import argocd

CONTROLS = ("promote", "promote-full", "abort", "retry")


def _written(rollout: Rollout, scenario: str, **options: Any) -> dict[str, Any]:
    """The Rollout object as the API server would return it after the engine's passes."""
    result = run_scenario(rollout, scenario, **options)
    body = result.rollout.model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["generation"] = 1
    body["status"] = result.status.wire() | {"observedGeneration": "1"}
    return body


@pytest.fixture(scope="module")
def written() -> dict[str, dict[str, Any]]:
    steps_pause: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}]
    crashing = canary(
        [{"setWeight": 25}, {"pause": {"duration": "10m"}}], progressDeadlineSeconds=30, progressDeadlineAbort=True
    )
    return {
        "healthy": _written(canary([{"setWeight": 25}, {"pause": {"duration": "10s"}}]), "good"),
        "paused": _written(canary(steps_pause), "good", auto_promote_after=None),
        "bluegreen-paused": _written(blue_green(auto_promote=False), "good", auto_promote_after=None),
        "progressing": _written(canary([{"setWeight": 25}, {"pause": {"duration": "1h"}}]), "good", time_limit=5),
        "aborted": _written(crashing, "crashloop"),
    }


def test_every_phase_the_engine_writes_has_its_argo_cd_health(written: dict[str, dict[str, Any]]) -> None:
    seen = {name: argocd.health(body) for name, body in written.items()}
    assert {name: found["status"] for name, found in seen.items()} == {
        "healthy": "Healthy",
        "paused": "Suspended",
        "bluegreen-paused": "Suspended",
        "progressing": "Progressing",
        "aborted": "Degraded",
    }
    assert "CanaryPauseStep" in seen["paused"]["message"]
    assert "BlueGreenPause" in seen["bluegreen-paused"]["message"]
    assert seen["aborted"]["message"] == written["aborted"]["status"]["message"]
    assert seen["aborted"]["message"].startswith("RolloutAborted: ")
    assert written["progressing"]["status"]["message"] in seen["progressing"]["message"]


def test_a_status_written_for_an_older_generation_is_progressing(written: dict[str, dict[str, Any]]) -> None:
    edited = written["healthy"] | {"metadata": written["healthy"]["metadata"] | {"generation": 2}}
    assert argocd.health(edited)["status"] == "Progressing"
    assert argocd.health(written["healthy"])["status"] == "Healthy"


def test_a_rollout_not_yet_observed_is_progressing_and_an_invalid_one_degraded(
    written: dict[str, dict[str, Any]],
) -> None:
    fresh = {key: value for key, value in written["healthy"].items() if key != "status"}
    assert argocd.health(fresh)["status"] == "Progressing"
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    invalid = {
        "type": "InvalidSpec",
        "status": "True",
        "reason": "InvalidSpec",
        "message": "spec.replicas: must be at least 0",
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }
    body = written["healthy"] | {"status": written["healthy"]["status"] | {"conditions": [invalid]}}
    found = argocd.health(body)
    assert found == {"status": "Degraded", "message": "InvalidSpec: spec.replicas: must be at least 0"}


def test_a_manual_pause_is_suspended(written: dict[str, dict[str, Any]]) -> None:
    body = written["progressing"] | {"spec": written["progressing"]["spec"] | {"paused": True}}
    assert argocd.health(body) == {"status": "Suspended", "message": "Rollout is paused manually"}


@pytest.mark.parametrize(
    ("phase", "health"),
    [
        (None, "Progressing"),
        ("Pending", "Progressing"),
        ("Running", "Progressing"),
        ("Successful", "Healthy"),
        ("Failed", "Degraded"),
        ("Error", "Degraded"),
        ("Inconclusive", "Unknown"),
    ],
)
@pytest.mark.parametrize("kind", ["AnalysisRun", "Experiment"])
def test_runs_and_experiments_map_argos_phases(kind: str, phase: str | None, health: str) -> None:
    body: dict[str, Any] = {"apiVersion": "headway.dev/v1alpha1", "kind": kind, "metadata": {"name": "r"}, "spec": {}}
    if phase is not None:
        body["status"] = {"phase": phase, "message": "metric errors assessed Failed"}
    found = argocd.health(body)
    assert found["status"] == health
    if phase in ("Failed", "Error"):
        assert found["message"].endswith(": metric errors assessed Failed")


def _cli(action: str, body: dict[str, Any]) -> tuple[Rollout, RolloutStatus]:
    """What the CLI's control makes of the same object (ControlError when it refuses)."""
    rollout = Rollout.model_validate(body)
    status = RolloutStatus.model_validate(body.get("status") or {})
    if action == "promote":
        return commands.promote(rollout, status)
    if action == "promote-full":
        return commands.promote(rollout, status, full=True)
    if action == "abort":
        return rollout, commands.abort(status)
    if action == "retry":
        return rollout, commands.retry(status)
    if action == "pause":
        return commands.pause(rollout), status
    assert action == "resume"
    return commands.resume(rollout), status


def _spec(rollout: Rollout) -> dict[str, Any]:
    return rollout.spec.model_dump(by_alias=True, mode="json", exclude_none=True)


@pytest.mark.parametrize("action", [*CONTROLS, "pause", "resume"])
@pytest.mark.parametrize("state", ["healthy", "paused", "bluegreen-paused", "progressing", "aborted", "manual"])
def test_each_action_changes_the_object_exactly_as_the_cli_does(
    written: dict[str, dict[str, Any]], state: str, action: str
) -> None:
    if state == "manual":
        body = written["progressing"] | {"spec": written["progressing"]["spec"] | {"paused": True}}
    else:
        body = written[state]
    try:
        want_rollout, want_status = _cli(action, body)
    except commands.ControlError as refused:
        with pytest.raises(LuaError, match=str(refused)):
            argocd.act(action, body)
        return
    changed = argocd.act(action, body)
    assert _spec(Rollout.model_validate(changed)) == _spec(want_rollout)
    assert RolloutStatus.model_validate(changed.get("status") or {}) == want_status


@pytest.mark.parametrize("state", ["healthy", "paused", "bluegreen-paused", "progressing", "aborted"])
def test_discovery_offers_exactly_the_controls_the_cli_accepts(written: dict[str, dict[str, Any]], state: str) -> None:
    body = written[state]
    offered = argocd.discover(body)
    for action in CONTROLS:
        try:
            _cli(action, body)
            accepted = True
        except commands.ControlError:
            accepted = False
        if action == "abort" and body["status"].get("abort"):
            accepted = False  # the CLI allows aborting twice (a no-op); Argo CD need not offer it
        assert offered[action] is accepted, action
    assert offered["pause"] is not body["spec"].get("paused", False)
    assert offered["restart"] is True


def test_restart_stamps_now_in_rfc3339_utc(written: dict[str, dict[str, Any]]) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    changed = argocd.act("restart", written["healthy"])
    stamped = datetime.fromisoformat(changed["spec"]["restartAt"].replace("Z", "+00:00"))
    assert before <= stamped <= datetime.now(UTC) + timedelta(seconds=1)
    want = _spec(commands.restart(Rollout.model_validate(written["healthy"]), stamped))
    got = _spec(Rollout.model_validate(changed))
    # The same instant; the CLI writes Python's isoformat (+00:00), Argo CD's Lua the RFC 3339 "Z" form.
    assert datetime.fromisoformat(got.pop("restartAt")) == datetime.fromisoformat(want.pop("restartAt"))
    assert got == want


def test_analysis_runs_can_be_terminated_while_running_only() -> None:
    running = {
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": "r"},
        "spec": {"metrics": []},
        "status": {"phase": "Running"},
    }
    assert argocd.discover(running) == {"terminate": True}
    assert argocd.act("terminate", running)["spec"]["terminate"] is True
    done = running | {"status": {"phase": "Successful"}}
    assert argocd.discover(done) == {"terminate": False}


def test_the_argocd_cm_snippet_is_rendered_from_the_scripts() -> None:
    assert argocd.SNIPPET.read_text(encoding="utf-8") == argocd.render(), "run: python -m tests.unit.deploy.argocd"
