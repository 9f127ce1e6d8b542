"""What the status says the router should be doing (`expected_routing`), and the core's rules on a read-back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headway.core.actions import SetHeaderRoute, SetMirrorRoute, SetWeight
from headway.core.dataplane import TRAFFIC_DRIFT, expected_routing
from headway.core.decide import decide
from headway.core.hashing import pod_template_hash
from headway.core.observation import Drift, DriftKind, Observation, RevisionState, RouterState
from headway.spec.rollout import HeaderRoutingMatch, RouteMatch, StringMatch
from headway.spec.status import CanaryStatus, Phase, RolloutStatus, TrafficWeights, WeightDestination
from tests.scenarios.harness import blue_green, canary

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TESTERS = [{"headerName": "X-Tester", "headerValue": {"exact": "yes"}}]
BETA = [{"headerName": "X-Beta", "headerValue": {"prefix": "b"}}]
MIRROR = [{"path": {"prefix": "/api"}}]
STEPS: list[dict[str, Any]] = [
    {"setHeaderRoute": {"name": "testers", "match": TESTERS}},
    {"setMirrorRoute": {"name": "shadow", "match": MIRROR, "percentage": 30}},
    {"setHeaderRoute": {"name": "testers", "match": BETA}},
    {"setWeight": 20},
    {"setHeaderRoute": {"name": "testers"}},
    {"pause": {}},
]


def weights(canary_weight: int, canary_hash: str, stable_hash: str) -> TrafficWeights:
    return TrafficWeights(
        canary=WeightDestination(weight=canary_weight, pod_template_hash=canary_hash),
        stable=WeightDestination(weight=100 - canary_weight, pod_template_hash=stable_hash),
    )


def status_at(index: int, headers: list[str], mirrors: list[str]) -> RolloutStatus:
    canary_status = CanaryStatus(weights=weights(20, "new", "old"), header_routes=headers, mirror_routes=mirrors)
    return RolloutStatus(stable_rs="old", current_step_index=index, canary=canary_status)


def test_the_routes_expected_are_those_of_the_steps_passed_latest_definition_first() -> None:
    rollout = canary(STEPS, routed=True)

    expected = expected_routing(rollout, status_at(4, ["testers"], ["shadow"]))

    assert expected is not None
    assert (expected.canary_weight, expected.canary_hash, expected.stable_hash) == (20, "new", "old")
    beta = tuple(HeaderRoutingMatch.model_validate(item) for item in BETA)
    assert expected.header_routes == (("testers", beta),)
    assert expected.mirror_routes == (("shadow", (RouteMatch(path=StringMatch(prefix="/api")),), 30),)
    assert expected.unknown_routes == frozenset()


def test_a_route_removed_by_a_step_is_not_expected_and_a_route_unknown_to_the_spec_is_not_compared() -> None:
    rollout = canary(STEPS, routed=True)

    after_removal = expected_routing(rollout, status_at(5, [], ["shadow"]))
    unknown = expected_routing(rollout, status_at(5, ["from-an-older-spec"], ["shadow"]))

    assert after_removal is not None and after_removal.header_routes == ()
    assert unknown is not None and unknown.unknown_routes == frozenset({"from-an-older-spec"})


def test_nothing_is_expected_before_a_weight_was_set_or_without_a_router() -> None:
    assert expected_routing(canary(STEPS, routed=True), RolloutStatus(stable_rs="old")) is None
    assert expected_routing(canary(STEPS), status_at(4, [], [])) is None
    assert expected_routing(blue_green(), status_at(4, [], [])) is None


def steady(rollout: Any, router: RouterState, ready: int = 4) -> tuple[RolloutStatus, Observation]:
    """A rollout that has been Healthy on its only revision, observed with ``router``'s read-back."""
    pod_hash = pod_template_hash(rollout.spec.template)
    status = RolloutStatus(
        phase=Phase.HEALTHY,
        stable_rs=pod_hash,
        current_pod_hash=pod_hash,
        current_step_index=len(rollout.spec.strategy.canary.steps) if rollout.spec.strategy.canary else None,
        canary=CanaryStatus(weights=weights(0, pod_hash, pod_hash)) if rollout.spec.strategy.canary else CanaryStatus(),
    )
    if rollout.spec.strategy.blue_green is not None:
        status = status.model_copy(
            update={"blue_green": status.blue_green.model_copy(update={"active_selector": pod_hash})}
        )
    revision = RevisionState(hash=pod_hash, number=1, replicas=4, ready=ready, available=ready)
    return status, Observation(now=NOW, revisions={pod_hash: revision}, router=router)


def test_drift_is_repaired_before_anything_else_and_keeps_the_rollout_from_healthy() -> None:
    rollout = canary(STEPS, routed=True)
    pod_hash = pod_template_hash(rollout.spec.template)
    drift = (
        Drift(DriftKind.WEIGHT, expected="all traffic", found="50 to canary x"),
        Drift(DriftKind.HEADER_ROUTE, "sneaky", expected="absent", found="present"),
        Drift(DriftKind.MIRROR_ROUTE, "leftover", expected="absent", found="present"),
    )
    status, observation = steady(rollout, RouterState(canary_weight=50, verified=True, drift=drift))

    decision = decide(rollout, status, observation)

    assert decision.actions[:3] == (
        SetWeight(canary_weight=0, canary_hash=pod_hash, stable_hash=pod_hash),
        SetHeaderRoute(name="sneaky", match=None),
        SetMirrorRoute(name="leftover", match=None, percentage=100),
    )
    assert decision.status.phase == Phase.PROGRESSING
    assert "traffic routing drifted" in decision.status.message
    event = next(e for e in decision.events if e.reason == TRAFFIC_DRIFT)
    assert "header route 'sneaky': expected absent, found present" in event.message
    assert decision.requeue_after is not None and decision.requeue_after <= 1.0


def test_blue_green_is_not_healthy_while_its_active_revision_has_no_backend_routed() -> None:
    rollout = blue_green()
    status, observation = steady(rollout, RouterState(canary_weight=0, verified=True, backends={}))

    decision = decide(rollout, status, observation)

    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.message.endswith("has no ready backends routed to it")
    routing = (SetWeight, SetHeaderRoute, SetMirrorRoute)
    assert not [x for x in decision.actions if isinstance(x, routing)], "backends are the runtime's to set"

    pod_hash = pod_template_hash(rollout.spec.template)
    routed = RouterState(canary_weight=0, verified=True, backends={pod_hash: 4})
    status, observation = steady(rollout, routed)
    assert decide(rollout, status, observation).status.phase == Phase.HEALTHY


def test_a_router_that_cannot_verify_at_all_does_not_hold_back_healthy() -> None:
    """NotImplemented (None) is "cannot tell", as for Istio or SMI: the write is trusted; only False blocks."""
    rollout = canary(STEPS, routed=True)
    status, observation = steady(rollout, RouterState(canary_weight=0, verified=None))

    assert decide(rollout, status, observation).status.phase == Phase.HEALTHY


def test_a_repair_the_strategy_replaces_in_the_same_pass_is_dropped_not_flipped() -> None:
    """Aborting sets the weight to 0 anyway: first setting the drifted 20 back would flip traffic for nothing."""
    rollout = canary([{"setWeight": 20}, {"pause": {}}], routed=True)
    new = pod_template_hash(rollout.spec.template)
    status = RolloutStatus(
        stable_rs="old",
        current_pod_hash=new,
        current_step_index=1,
        abort=True,
        aborted_at=NOW,
        canary=CanaryStatus(weights=weights(20, new, "old")),
    )
    revisions = {
        "old": RevisionState(hash="old", number=1, replicas=4, ready=4, available=4),
        new: RevisionState(hash=new, number=2, replicas=1, ready=1, available=1),
    }
    drift = (Drift(DriftKind.WEIGHT, expected="20 to canary", found="40 to canary"),)
    observation = Observation(
        now=NOW, revisions=revisions, router=RouterState(canary_weight=40, verified=True, drift=drift)
    )

    decision = decide(rollout, status, observation)

    assert [a for a in decision.actions if isinstance(a, SetWeight)] == [
        SetWeight(canary_weight=0, canary_hash=new, stable_hash="old")
    ]
    event = next(e for e in decision.events if e.reason == TRAFFIC_DRIFT)
    assert "an earlier pass that failed after writing it" in event.message
