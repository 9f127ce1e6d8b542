"""The TrafficRouter contract: what is set reads back, setting twice is setting once, restore undoes it all.

A new router joins by adding a factory to `ROUTERS` (with whatever it needs to settle, e.g. a fake API server).
The fake-only section pins lag and verification, which the core's weight-verification logic is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import DriftKind
from headway.routers.base import TrafficRouter, Verification
from headway.routers.composite import CompositeRouter
from headway.routers.fake import EPOCH, FakeRouter
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch, StringMatch
from tests.scenarios.harness import canary


def composite_of_two_fakes() -> TrafficRouter:
    """Several routers of one Rollout, driven as one (nginx + smi in a cluster)."""
    return CompositeRouter((("first", FakeRouter()), ("second", FakeRouter())))


ROUTERS: list[Callable[[], TrafficRouter]] = [FakeRouter, composite_of_two_fakes]

HEADER = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes")),)
MIRROR = (RouteMatch(path=StringMatch(prefix="/api")),)


@pytest.fixture(params=ROUTERS, ids=lambda factory: getattr(factory, "__name__", "router"))
def router(request: pytest.FixtureRequest) -> TrafficRouter:
    factory: Callable[[], TrafficRouter] = request.param
    return factory()


@pytest.fixture
def rollout() -> Rollout:
    return canary(routed=True)


def reads_back(router: TrafficRouter, rollout: Rollout, weight: int) -> bool:
    state = router.read_weight(rollout)
    return state.canary_weight is None or state.canary_weight == weight


@pytest.mark.parametrize("weight", [0, 5, 50, 100])
def test_a_weight_reads_back(router: TrafficRouter, rollout: Rollout, weight: int) -> None:
    router.set_weight(rollout, weight, "new", "old")

    state = router.read_weight(rollout)

    assert reads_back(router, rollout, weight)
    assert state.verified is not False


def test_setting_a_weight_twice_is_setting_it_once(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 20, "new", "old")
    router.set_weight(rollout, 20, "new", "old")

    assert reads_back(router, rollout, 20)


def test_routes_are_set_and_removed_idempotently(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_header_route(rollout, "testers", HEADER)
    router.set_header_route(rollout, "testers", HEADER)
    router.set_mirror_route(rollout, "mirror", MIRROR, 20)
    router.set_mirror_route(rollout, "mirror", MIRROR, 20)
    router.set_header_route(rollout, "testers", None)
    router.set_header_route(rollout, "testers", None)
    router.remove_managed_routes(rollout)
    router.remove_managed_routes(rollout)


def test_restore_undoes_every_change(router: TrafficRouter, rollout: Rollout) -> None:
    before = router.read_weight(rollout)
    router.set_weight(rollout, 40, "new", "old")
    router.set_header_route(rollout, "testers", HEADER)

    router.restore(rollout)
    router.restore(rollout)

    assert router.read_weight(rollout) == before


def test_rollouts_do_not_share_weights(router: TrafficRouter) -> None:
    web, api = canary(name="web", routed=True), canary(name="api", routed=True)

    router.set_weight(web, 30, "new", "old")

    assert reads_back(router, api, 0)


# --- read-back of the managed routing (drift) -------------------------------------------------------------------


def test_what_was_set_reads_back_without_drift(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 30, "new", "old")

    state = router.read_state(rollout, ExpectedRouting(canary_weight=30, canary_hash="new", stable_hash="old"))

    assert state.drift == ()
    assert state.canary_weight in (None, 30)
    assert state.verified is not False
    assert router.read_state(rollout, None).drift == (), "nothing expected: nothing compared"


def test_a_weight_other_than_the_one_set_reads_back_as_drift(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 30, "new", "old")

    state = router.read_state(rollout, ExpectedRouting(canary_weight=60, canary_hash="new", stable_hash="old"))

    assert [item.kind for item in state.drift] == [DriftKind.WEIGHT]
    assert "60" in state.drift[0].expected and "30" in state.drift[0].found


def test_managed_routes_read_back_and_a_lost_one_is_drift(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 30, "new", "old")
    router.set_header_route(rollout, "testers", HEADER)
    router.set_mirror_route(rollout, "mirror", MIRROR, 20)
    expected = ExpectedRouting(
        canary_weight=30,
        canary_hash="new",
        stable_hash="old",
        header_routes=(("testers", HEADER),),
        mirror_routes=(("mirror", MIRROR, 20),),
    )
    assert router.read_state(rollout, expected).drift == ()

    router.set_header_route(rollout, "testers", None)
    router.set_mirror_route(rollout, "mirror", MIRROR, 50)

    drift = router.read_state(rollout, expected).drift
    assert [(item.kind, item.name) for item in drift] == [
        (DriftKind.HEADER_ROUTE, "testers"),
        (DriftKind.MIRROR_ROUTE, "mirror"),
    ]
    assert drift[0].found == "missing"


# --- the fake's lag and verification -------------------------------------------------------------------------


def test_fake_lagging_weight_is_not_verified_until_it_lands() -> None:
    router, rollout = FakeRouter(lag_seconds=15), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")
    assert router.read_weight(rollout).canary_weight == 0
    assert router.verification(rollout) is Verification.NOT_VERIFIED
    assert router.next_change_at() == EPOCH + timedelta(seconds=15)

    router.advance(EPOCH + timedelta(seconds=15))
    assert router.read_weight(rollout).canary_weight == 30
    assert router.read_weight(rollout).verified is True


def test_fake_repeating_a_write_does_not_restart_the_lag() -> None:
    router, rollout = FakeRouter(lag_seconds=10), canary(routed=True)
    router.set_weight(rollout, 30, "new", "old")
    router.advance(EPOCH + timedelta(seconds=5))

    router.set_weight(rollout, 30, "new", "old")
    router.advance(EPOCH + timedelta(seconds=10))

    assert router.read_weight(rollout).canary_weight == 30


def test_fake_can_fail_verification_forever() -> None:
    router, rollout = FakeRouter(fail_verification=True), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")

    assert router.read_weight(rollout).verified is False


def test_fake_without_read_back_reports_not_implemented() -> None:
    router, rollout = FakeRouter(verifies=False), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")

    assert router.read_weight(rollout).canary_weight is None
    assert router.read_weight(rollout).verified is None
    assert router.verification(rollout) is Verification.NOT_IMPLEMENTED


def test_fake_fails_the_next_call_when_told() -> None:
    router, rollout = FakeRouter(), canary(routed=True)
    router.fail_next("set_weight", RuntimeError("boom"))

    with pytest.raises(RuntimeError, match="boom"):
        router.set_weight(rollout, 30, "new", "old")
    router.set_weight(rollout, 30, "new", "old")

    assert router.route(rollout).canary_weight == 30


def test_fake_records_routes_as_the_data_plane_sees_them() -> None:
    router, rollout = FakeRouter(), canary(routed=True)
    router.set_header_route(rollout, "testers", HEADER)
    router.set_mirror_route(rollout, "mirror", MIRROR, 20)

    router.set_header_route(rollout, "testers", None)

    route = router.route(rollout)
    assert route.header_routes == ()
    assert route.mirror_routes == (("mirror", MIRROR, 20),)


@pytest.mark.parametrize(
    ("verification", "verified"),
    [(Verification.VERIFIED, True), (Verification.NOT_VERIFIED, False), (Verification.NOT_IMPLEMENTED, None)],
)
def test_verification_maps_to_the_observed_tri_state(verification: Verification, verified: bool | None) -> None:
    assert verification.as_bool() is verified
    assert Verification.of(verified) is verification
