"""Property-based tests: invariants of `decide` over generated rollouts, outcomes and user actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headway.core import actions as a
from headway.core import commands
from headway.core.decide import decide
from headway.core.weights import resolve_fenceposts
from headway.spec.status import PauseReason, Phase, RunPhase
from tests.unit.core.driver import World, healthy, rollout, settled, started

step = st.one_of(
    st.builds(lambda w: {"setWeight": w}, st.integers(0, 100)),
    st.builds(lambda d: {"pause": {"duration": d}}, st.integers(0, 120)),
    st.just({"analysis": {"templates": [{"templateName": "check"}]}}),
)
surge_or_unavailable = st.one_of(st.integers(0, 3), st.sampled_from(["0%", "10%", "25%", "50%"]))


@st.composite
def canary_rollouts(draw: st.DrawFn) -> dict[str, Any]:
    strategy: dict[str, Any] = {"steps": draw(st.lists(step, max_size=6))}
    if draw(st.booleans()):
        strategy["trafficRouting"] = {"nginx": {"stableIngress": "web"}}
        strategy["canaryService"] = "web-canary"
        strategy["stableService"] = "web-stable"
        strategy["dynamicStableScale"] = draw(st.booleans())
        if draw(st.booleans()):
            strategy["trafficRouting"]["maxTrafficWeight"] = draw(st.sampled_from([100, 1000]))
    else:
        surge = draw(surge_or_unavailable)
        unavailable = draw(surge_or_unavailable)
        if str(surge).rstrip("%") == "0" and str(unavailable).rstrip("%") == "0":
            unavailable = 1
        strategy["maxSurge"] = surge
        strategy["maxUnavailable"] = unavailable
    return {"canary": strategy}


outcome = st.sampled_from([RunPhase.SUCCESSFUL, RunPhase.FAILED, RunPhase.INCONCLUSIVE])
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scripted(phase: RunPhase) -> Any:
    return lambda name, age: phase if age >= 20 else RunPhase.RUNNING


def finished(w: World) -> bool:
    """Promoted and settled, aborted and settled, or paused for a human."""
    if settled(w):
        return True
    if w.status.abort:
        return w.replicas(w.new_hash) == 0 and w.observe().revisions[w.status.stable_rs or ""].available == 10
    reasons = {c.reason for c in w.status.pause_conditions}
    return w.status.phase == Phase.PAUSED and PauseReason.CANARY_PAUSE_STEP not in reasons


@fast
@given(strategy=canary_rollouts(), result=outcome, replicas=st.integers(1, 12))
def test_weights_stay_within_bounds_and_stable_availability_holds(
    strategy: dict[str, Any], result: RunPhase, replicas: int
) -> None:
    w = started(rollout(strategy, replicas=replicas), script=scripted(result))
    canary = w.rollout.spec.strategy.canary
    assert canary is not None
    routing = canary.traffic_routing
    max_weight = routing.max_weight() if routing is not None else 100
    _, unavailable = resolve_fenceposts(canary.max_surge_or_default(), canary.max_unavailable_or_default(), replicas)
    stable = w.new_hash

    def check(w: World) -> None:
        for x in w.log:
            if isinstance(x, a.SetWeight):
                assert 0 <= x.canary_weight <= max_weight
        available = sum(r.available for r in w.observe().revisions.values())
        if routing is None:
            assert available >= replicas - unavailable
        elif not canary.dynamic_stable_scale and w.status.stable_rs == stable:
            assert w.replicas(stable) == replicas  # stable keeps full size until promotion

    w.deploy("app:2").run(until=lambda w: finished(w) or w.status.abort, each=check, limit=3600)


@fast
@given(strategy=canary_rollouts(), abort_after=st.integers(0, 400), replicas=st.integers(1, 8))
def test_every_abort_ends_at_full_stable_with_no_canary_traffic(
    strategy: dict[str, Any], abort_after: int, replicas: int
) -> None:
    w = started(rollout(strategy, replicas=replicas))
    stable = w.new_hash
    w.deploy("app:2")
    deadline = w.now + timedelta(seconds=abort_after)
    w.run(until=lambda w: w.now >= deadline or healthy(w), limit=abort_after + 10)
    if w.status.stable_rs == w.new_hash:
        return  # promoted before the abort: nothing to abort
    w.status = commands.abort(w.status)
    w.run(until=lambda w: w.replicas(w.new_hash) == 0, limit=600)
    w.run(until=lambda w: w.observe().revisions[stable].available == replicas, limit=600)
    assert w.status.stable_rs == stable
    assert w.status.phase == Phase.DEGRADED
    assert w.weight in (None, 0)


@fast
@given(strategy=canary_rollouts(), replicas=st.integers(1, 10))
def test_promotion_never_precedes_the_steps_and_their_analysis(strategy: dict[str, Any], replicas: int) -> None:
    w = started(rollout(strategy, replicas=replicas))
    canary = w.rollout.spec.strategy.canary
    assert canary is not None
    w.deploy("app:2")
    completed = 0
    while not healthy(w):
        decision = w.step()
        completed += sum(1 for e in decision.events if e.reason == "RolloutStepCompleted")
        if decision.status.stable_rs == w.new_hash:
            assert completed == len(canary.steps)
            for name in w.runs:
                assert w.script(name, (w.now - w.runs[name]).total_seconds()) == RunPhase.SUCCESSFUL
        w.now += timedelta(seconds=5)
        assert w.now.year == 2026


@fast
@given(strategy=canary_rollouts(), seconds=st.integers(0, 900), replicas=st.integers(1, 10))
def test_decide_is_deterministic(strategy: dict[str, Any], seconds: int, replicas: int) -> None:
    w = started(rollout(strategy, replicas=replicas))
    w.deploy("app:2")
    end = w.now + timedelta(seconds=seconds)
    w.run(until=lambda w: w.now >= end or settled(w), limit=seconds + 10)
    observation = w.observe()
    assert decide(w.rollout, w.status, observation) == decide(w.rollout, w.status, observation)
