"""Whole canary rollouts driven through `decide` in virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from headway.core import actions as a
from headway.core import commands
from headway.spec.status import PauseReason, Phase, RunPhase
from tests.unit.core.driver import T0, World, healthy, rollout, settled, started

STEPS = [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {"duration": 60}}]
ROUTING = {
    "canaryService": "web-canary",
    "stableService": "web-stable",
    "trafficRouting": {"nginx": {"stableIngress": "web"}},
}


def canary(**extra: Any) -> dict[str, Any]:
    return {"canary": {"steps": STEPS, **extra}}


def weights_set(w: World) -> list[int]:
    return [x.canary_weight for x in w.log if isinstance(x, a.SetWeight)]


def test_first_deploy_goes_straight_to_full_scale_without_steps() -> None:
    w = started(rollout(canary()))
    creates = [x for x in w.log if isinstance(x, a.CreateRevision)]
    assert [(c.number, c.replicas) for c in creates] == [(1, 10)]
    assert w.status.stable_rs == w.new_hash
    assert w.status.current_step_index == len(STEPS)
    assert w.status.phase == Phase.HEALTHY
    assert w.now - T0 == timedelta(seconds=10)  # one startup time, no pauses


def test_basic_canary_walks_every_step_then_promotes() -> None:
    w = started(rollout(canary()))
    old = w.status.stable_rs
    w.deploy("app:2").run(until=settled)
    # Pauses of 60 s each plus startup times: never faster than the pauses allow.
    assert w.now - T0 >= timedelta(seconds=120)
    assert w.status.stable_rs == w.new_hash != old
    assert w.replicas(old) == 0
    assert w.replicas(w.new_hash) == 10
    reasons = [e.reason for d in w.decisions for e in d.events]
    assert reasons.count("RolloutStepCompleted") == len(STEPS)
    assert reasons[-1] == "RolloutCompleted"


def test_basic_canary_sizes_follow_the_step_weights() -> None:
    w = started(rollout(canary()))
    old = w.status.stable_rs
    w.deploy("app:2")
    seen: set[tuple[int, int]] = set()

    def record(w: World) -> None:
        if w.status.phase == Phase.PAUSED:
            seen.add((w.replicas(w.new_hash), w.replicas(old)))

    w.run(until=settled, each=record)
    assert seen == {(2, 8), (5, 5)}


def test_traffic_routed_canary_shifts_weight_only_after_the_canary_is_ready() -> None:
    w = started(rollout(canary(**ROUTING)))

    def check(w: World) -> None:
        canary_pods = w.observe().revisions[w.new_hash].available if w.new_hash in w.revisions else 0
        if w.weight and w.status.stable_rs != w.new_hash:
            # Never send a share of traffic larger than the share of ready canary pods could serve.
            assert canary_pods * 100 >= w.weight * 10

    w.deploy("app:2").run(until=settled, each=check)
    # first deploy, canary pointed at the new revision, the two steps, full shift, back to 0 once promoted
    assert weights_set(w) == [0, 0, 20, 50, 100, 0]
    assert w.services == {"web-canary": w.new_hash, "web-stable": w.new_hash}


def test_old_stable_scales_down_only_after_scale_down_delay_with_a_router() -> None:
    w = started(rollout(canary(**ROUTING, scaleDownDelaySeconds=120)))
    old = w.status.stable_rs
    w.deploy("app:2").run(until=healthy)
    promoted_at = w.now
    assert w.replicas(old) == 10
    w.run(until=settled)
    assert w.now - promoted_at >= timedelta(seconds=120)


def test_indefinite_pause_waits_for_promote() -> None:
    w = started(rollout({"canary": {"steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}]}}))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    w.now += timedelta(hours=5)
    w.step()
    assert w.status.phase == Phase.PAUSED
    assert w.status.pause_reasons() == {PauseReason.CANARY_PAUSE_STEP}
    assert w.status.current_step_index == 1
    w.rollout, w.status = commands.promote(w.rollout, w.status)
    w.run(until=settled)
    assert w.status.current_step_index == 3


def test_abort_mid_way_returns_all_traffic_to_stable_and_scales_canary_down_after_delay() -> None:
    w = started(rollout(canary(**ROUTING, abortScaleDownDelaySeconds=45)))
    old = w.status.stable_rs
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == 2)
    w.status = commands.abort(w.status)
    w.step()
    aborted_at = w.now
    assert w.status.phase == Phase.DEGRADED
    assert w.status.message.startswith("RolloutAborted:")
    assert w.weight == 0
    assert w.replicas(old) == 10
    assert w.replicas(w.new_hash) > 0  # kept for abortScaleDownDelaySeconds
    w.run(until=lambda w: w.replicas(w.new_hash) == 0)
    assert w.now - aborted_at >= timedelta(seconds=45)
    assert w.status.stable_rs == old
    assert w.status.phase == Phase.DEGRADED


def test_abort_without_router_scales_the_canary_away_at_once() -> None:
    w = started(rollout(canary()))
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == 2)
    w.status = commands.abort(w.status)
    w.run(until=lambda w: w.replicas(w.new_hash) == 0 and w.observe().revisions[old].available == 10, limit=120)
    assert w.status.phase == Phase.DEGRADED


def test_retry_after_abort_starts_again_from_the_first_step() -> None:
    w = started(rollout(canary()))
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == 2)
    w.status = commands.abort(w.status)
    w.run(until=lambda w: w.replicas(w.new_hash) == 0, limit=120)
    w.status = commands.retry(w.status)
    w.step()
    assert w.status.current_step_index == 0
    assert w.status.phase == Phase.PROGRESSING
    w.run(until=settled)


def test_promote_full_skips_the_remaining_steps() -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}, {"setWeight": 80}, {"pause": {}}]
    w = started(rollout({"canary": {"steps": steps}}))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    w.rollout, w.status = commands.promote(w.rollout, w.status, full=True)
    w.run(until=settled, limit=300)
    completed = [e for d in w.decisions for e in d.events if e.reason == "RolloutStepCompleted"]
    assert len(completed) == 1  # only the first setWeight ran


def step_analysis_script(phase: RunPhase) -> Any:
    def script(name: str, age: float) -> RunPhase:
        return phase if age >= 30 else RunPhase.RUNNING

    return script


ANALYSIS_STEPS = [
    {"setWeight": 20},
    {"analysis": {"templates": [{"templateName": "success-rate"}]}},
    {"setWeight": 60},
]


def test_failed_step_analysis_aborts() -> None:
    w = started(rollout({"canary": {"steps": ANALYSIS_STEPS, **ROUTING}}), script=step_analysis_script(RunPhase.FAILED))
    old = w.status.stable_rs
    w.deploy("app:2").run(until=lambda w: w.status.abort)
    assert w.status.phase == Phase.DEGRADED
    assert "Step analysis run" in w.status.message
    assert w.weight == 0
    assert w.replicas(old) == 10
    assert 60 not in weights_set(w)  # never went past the failed analysis


def test_a_run_ending_is_announced_once_before_the_abort_it_causes() -> None:
    w = started(rollout({"canary": {"steps": ANALYSIS_STEPS, **ROUTING}}), script=step_analysis_script(RunPhase.FAILED))
    w.deploy("app:2").run(until=lambda w: w.status.abort)
    w.step()
    w.step()  # the run stays Failed for more passes: still one announcement
    reasons = [e.reason for d in w.decisions for e in d.events]
    assert reasons.count("AnalysisRunFailed") == 1
    assert reasons.index("AnalysisRunFailed") < reasons.index("RolloutAborted")
    failed = next(e for d in w.decisions for e in d.events if e.reason == "AnalysisRunFailed")
    assert failed.type.value == "Warning" and "(was " in failed.message


def test_a_successful_run_is_announced_as_successful() -> None:
    w = started(rollout({"canary": {"steps": ANALYSIS_STEPS}}), script=step_analysis_script(RunPhase.SUCCESSFUL))
    w.deploy("app:2").run(until=settled)
    reasons = [e.reason for d in w.decisions for e in d.events]
    assert reasons.count("AnalysisRunSuccessful") == 1
    assert "AnalysisRunFailed" not in reasons


def test_inconclusive_analysis_pauses_and_promote_continues() -> None:
    w = started(rollout({"canary": {"steps": ANALYSIS_STEPS}}), script=step_analysis_script(RunPhase.INCONCLUSIVE))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    assert w.status.pause_reasons() == {PauseReason.INCONCLUSIVE_ANALYSIS}
    w.now += timedelta(minutes=30)
    w.step()
    assert w.status.phase == Phase.PAUSED  # holds until a human decides
    w.rollout, w.status = commands.promote(w.rollout, w.status)
    w.run(until=settled)


def test_background_analysis_failure_aborts_from_starting_step() -> None:
    background = {"templates": [{"templateName": "errors"}], "startingStep": 2}
    w = started(rollout(canary(analysis=background)), script=step_analysis_script(RunPhase.FAILED))
    w.deploy("app:2").run(until=lambda w: w.status.abort)
    starts = [x for x in w.log if isinstance(x, a.StartAnalysisRun)]
    assert [s.kind for s in starts] == [a.RunKind.BACKGROUND]
    assert w.status.phase == Phase.DEGRADED


def test_background_analysis_still_running_at_promotion_is_terminated() -> None:
    background = {"templates": [{"templateName": "errors"}]}
    w = started(rollout(canary(analysis=background)), script=lambda name, age: RunPhase.RUNNING)
    w.deploy("app:2").run(until=settled)
    assert any(isinstance(x, a.TerminateAnalysisRun) for x in w.log)


def test_header_and_mirror_routes_are_set_and_removed_at_the_end() -> None:
    steps = [
        {"setCanaryScale": {"replicas": 1}},
        {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
        {"setMirrorRoute": {"name": "shadow", "percentage": 30, "match": [{"method": {"exact": "GET"}}]}},
        {"pause": {"duration": 30}},
        {"setWeight": 50},
    ]
    routing = {**ROUTING, "trafficRouting": {"istio": {}, "managedRoutes": [{"name": "beta"}, {"name": "shadow"}]}}
    w = started(rollout({"canary": {"steps": steps, **routing}}))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    assert w.replicas(w.new_hash) == 1  # setCanaryScale, not the weight
    assert w.status.canary.header_routes == ["beta"]
    assert w.status.canary.mirror_routes == ["shadow"]
    w.run(until=settled)
    kinds = [type(x).__name__ for x in w.log]
    assert kinds.index("SetHeaderRoute") < kinds.index("SetMirrorRoute") < kinds.index("RemoveManagedRoutes")
    assert w.status.canary.header_routes == []


def test_a_route_step_with_a_canary_scale_sets_the_route_and_waits_for_the_pods() -> None:
    """Argo lets setCanaryScale share a step with setHeaderRoute: the step is done once both are."""
    route = {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}]}
    steps = [{"setCanaryScale": {"replicas": 2}, "setHeaderRoute": route}, {"pause": {}}]
    routing = {**ROUTING, "trafficRouting": {"istio": {}, "managedRoutes": [{"name": "beta"}]}}
    w = started(rollout({"canary": {"steps": steps, **routing}}))
    available_when_done: list[int] = []

    def watch(w: World) -> None:
        if w.status.current_step_index == 1 and not available_when_done:
            available_when_done.append(w.observe().revisions[w.new_hash].available)

    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED, each=watch)
    assert available_when_done == [2]  # the step waited for both canary pods
    assert w.status.canary.header_routes == ["beta"]
    assert any(isinstance(x, a.SetHeaderRoute) and x.name == "beta" for x in w.log)


def test_undo_within_rollback_window_skips_steps() -> None:
    w = started(rollout(canary(), rollbackWindow={"revisions": 3}))
    first = w.rollout.spec.template
    w.deploy("app:2").run(until=settled)
    w.deploy("app:3").run(until=settled)
    assert first is not None
    w.rollout = commands.undo(w.rollout, first)
    before = len(w.decisions)
    w.run(until=settled, limit=300)
    events = [e for d in w.decisions[before:] for e in d.events]
    assert any("rollback within window" in e.message for e in events)
    assert not [e for e in events if e.reason == "RolloutStepCompleted"]
    assert [x for x in w.log if isinstance(x, a.CreateRevision)][-1].number == 3  # revision 1 reused


def test_undo_outside_rollback_window_walks_the_steps() -> None:
    w = started(rollout(canary()))
    first = w.rollout.spec.template
    w.deploy("app:2").run(until=settled)
    assert first is not None
    w.rollout = commands.undo(w.rollout, first)
    before = len(w.decisions)
    w.run(until=settled)
    events = [e for d in w.decisions[before:] for e in d.events]
    assert len([e for e in events if e.reason == "RolloutStepCompleted"]) == len(STEPS)


def test_reverting_to_stable_mid_rollout_goes_back_without_steps() -> None:
    w = started(rollout(canary(**ROUTING)))
    stable = w.status.stable_rs
    first = w.rollout.spec.template
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == 2)
    canary_hash = w.new_hash
    assert first is not None
    w.rollout = commands.undo(w.rollout, first)
    w.run(until=lambda w: w.replicas(canary_hash) == 0)
    assert w.status.stable_rs == stable
    assert w.weight == 0
    assert w.status.phase == Phase.HEALTHY


def test_crashlooping_canary_hits_the_progress_deadline_and_aborts() -> None:
    w = started(rollout(canary(**ROUTING), progressDeadlineSeconds=120, progressDeadlineAbort=True))
    w.deploy("app:2")
    w.broken.add(w.new_hash)
    w.run(until=lambda w: w.status.abort, limit=600)
    assert "ProgressDeadlineExceeded" in [e.reason for d in w.decisions for e in d.events]
    assert w.weight == 0


def test_progress_deadline_without_abort_reports_degraded_and_recovers() -> None:
    w = started(rollout(canary(), progressDeadlineSeconds=60))
    w.deploy("app:2")
    w.broken.add(w.new_hash)
    w.run(until=lambda w: w.status.phase == Phase.DEGRADED, limit=600)
    assert not w.status.abort
    assert w.status.message.startswith("ProgressDeadlineExceeded")
    w.broken.clear()
    w.run(until=settled)


def test_spec_paused_holds_the_rollout_until_resumed() -> None:
    w = started(rollout(canary()))
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == 1)
    w.rollout = commands.pause(w.rollout)
    w.now += timedelta(hours=1)
    w.step()
    assert w.status.phase == Phase.PAUSED
    assert w.status.message == "manually paused"
    index = w.status.current_step_index
    w.now += timedelta(hours=1)
    w.step()
    assert w.status.current_step_index == index
    w.rollout = commands.resume(w.rollout)
    w.run(until=settled)


def test_restart_restarts_the_live_revisions_once() -> None:
    w = started(rollout(canary()))
    w.rollout = commands.restart(w.rollout, w.now)
    w.step()
    w.step()
    assert [x for x in w.log if isinstance(x, a.RestartRevision)] == [a.RestartRevision(hash=w.new_hash)]


def test_revision_history_limit_deletes_the_oldest_scaled_down_revisions() -> None:
    w = started(rollout({"canary": {"steps": []}}, revisionHistoryLimit=1))
    for image in ("app:2", "app:3", "app:4"):
        w.deploy(image).run(until=settled)
    w.step()
    assert len(w.revisions) == 2  # the live one and one in history


def test_experiment_step_is_started_and_waited_for() -> None:
    steps = [
        {"experiment": {"duration": "1m", "templates": [{"name": "canary", "specRef": "canary"}]}},
        {"setWeight": 50},
    ]
    w = started(rollout({"canary": {"steps": steps}}))
    w.deploy("app:2")
    w.step()
    # The experiment copies the canary ReplicaSet: it is created first (at 0 pods), the experiment on the next pass
    # (started in the same pass, a real API server had no canary ReplicaSet for it to copy and it failed).
    assert not [x for x in w.log if isinstance(x, a.StartExperiment)]
    assert [x.replicas for x in w.log if isinstance(x, a.CreateRevision) and x.hash == w.new_hash] == [0]
    w.step()
    started_experiments = [x for x in w.log if isinstance(x, a.StartExperiment)]
    assert len(started_experiments) == 1
    assert w.status.phase == Phase.PROGRESSING
    assert w.status.current_step_index == 0


@pytest.mark.parametrize("replicas", [1, 3, 10])
def test_dynamic_stable_scale_keeps_total_pods_close_to_replicas(replicas: int) -> None:
    w = started(rollout(canary(**ROUTING, dynamicStableScale=True), replicas=replicas))
    totals: list[int] = []
    w.deploy("app:2").run(until=settled, each=lambda w: totals.append(sum(r.replicas for r in w.revisions.values())))
    peak = max(totals)
    assert peak <= 2 * replicas
    assert peak < 2 * replicas or replicas == 1


def test_observed_generation_follows_the_spec_the_pass_acted_on() -> None:
    w = started(rollout(canary()))
    assert w.status.observed_generation is None  # no generation (a manifest not from an API server): none claimed
    meta = w.rollout.metadata.model_copy(update={"generation": 7})
    w.rollout = w.rollout.model_copy(update={"metadata": meta})
    w.step()
    assert w.status.observed_generation == "7"
