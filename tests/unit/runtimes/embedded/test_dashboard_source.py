"""The dashboard's source over the embedded runner: views, weight history, actions and the change stream."""

from __future__ import annotations

import asyncio

import pytest

from headway.dashboard.model import Action, ActionRefusedError, RolloutNotFoundError
from headway.runtimes.embedded.dashboard_source import RunnerSource, run_view
from headway.spec.analysis import AnalysisRun
from tests.unit.runtimes.embedded.world import MANIFEST, World


async def started(world: World) -> RunnerSource:
    world.runner.apply_text(MANIFEST)
    await world.turns(5)
    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(5)
    return RunnerSource(world.runner)


@pytest.mark.asyncio
async def test_views_show_processes_roles_steps_and_weights_over_time(world: World) -> None:
    source = await started(world)
    [summary] = await source.list_rollouts()
    assert (summary.name, summary.phase, summary.canary_weight, summary.revisions) == ("web", "Paused", 20, [])

    view = await source.get_rollout("web", "default")
    assert view.revision_kind == "Processes" and view.paused
    assert view.step_list == ["setWeight 20", "pause (until promoted)", "setWeight 60", "pause 10"]
    assert {(r.image, r.role) for r in view.revisions} == {("web:v1", "stable"), ("web:v2", "canary")}
    assert view.weight_history[0].set == 0 and view.weight_history[-1].set == 20
    assert view.events[0].reason in {"RolloutPaused", "RolloutStepCompleted"}, "newest event first"


@pytest.mark.asyncio
async def test_weight_history_keeps_changes_and_stays_bounded(world: World) -> None:
    source = await started(world)
    await world.turns(600, step=10.0)  # far more steady points than the ring holds
    history = (await source.get_rollout("web", "default")).weight_history
    assert 0 < len(history) <= 240 and history[-1].set == 20


@pytest.mark.asyncio
async def test_actions_become_runner_commands_and_refusals_say_why(world: World) -> None:
    source = await started(world)
    result = await source.act("web", "default", Action.PROMOTE, {})
    assert result.ok
    await world.turns(5)
    assert (await source.get_rollout("web", "default")).canary_weight == 60

    await source.act("web", "default", Action.ABORT, {})
    await world.turns(3)
    with pytest.raises(ActionRefusedError, match="abort"):
        await source.act("web", "default", Action.PROMOTE, {})
    with pytest.raises(RolloutNotFoundError, match="no rollout named nope in namespace default"):
        await source.get_rollout("nope", "default")
    with pytest.raises(RolloutNotFoundError):
        await source.act("nope", "default", Action.ABORT, {})
    with pytest.raises(ActionRefusedError, match="toRevision"):
        await source.act("web", "default", Action.UNDO, {"toRevision": "two"})


@pytest.mark.asyncio
async def test_subscribe_yields_the_runners_events(world: World) -> None:
    source = await started(world)
    changes = source.subscribe()
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    world.runner.command("web", "promote")
    change = await asyncio.wait_for(pending, 5)
    assert (change.rollout, change.reason) == ("default/web", "UserPromote")
    await changes.aclose()  # type: ignore[attr-defined]


def test_run_view_carries_measurements_and_the_judges_evidence() -> None:
    judged = {"pValue": "0.004", "ratio": "2.5", "lower": "1.3", "upper": "", "explanation": "Fail: canary worse"}
    window = '{"canaryRequests":400,"canaryBad":40,"stableRequests":1600,"stableBad":16}'
    run = AnalysisRun.model_validate(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "metadata": {
                "name": "web-abc-1",
                "labels": {"rollouts-pod-template-hash": "abc", "headway.dev/kind": "step"},
            },
            "spec": {"metrics": []},
            "status": {
                "phase": "Failed",
                "metricResults": [
                    {
                        "name": "latency",
                        "phase": "Successful",
                        "measurements": [
                            {"phase": "Successful", "finishedAt": "2026-01-01T00:00:05Z", "value": "[0.12]"},
                            {"phase": "Error", "message": "no answer"},
                        ],
                    },
                    {
                        "name": "judge",
                        "phase": "Failed",
                        "metadata": judged,
                        "measurements": [
                            {
                                "phase": "Failed",
                                "finishedAt": "2026-01-01T00:00:10Z",
                                "value": window,
                                "metadata": judged,
                            }
                        ],
                    },
                ],
            },
        }
    )
    view = run_view("web-abc-1", "Failed", "judge failed", run)
    assert (view.kind, view.revision) == ("step", "abc")
    assert [(m.metric, m.value) for m in view.measurements] == [("latency", 0.12), ("judge", 2.5)]
    judge = view.judge
    assert judge is not None
    assert (judge.ratio, judge.lower, judge.upper, judge.p_value) == (2.5, 1.3, None, 0.004)
    assert judge.verdict == "Fail: canary worse"
    assert (judge.canary_requests, judge.stable_requests, len(judge.history)) == (400, 1600, 1)
    assert run_view("x", "Running", "", None).measurements == []
