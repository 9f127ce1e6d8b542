"""Several routers as one: every write reaches each, a weight is reported only when all read it back."""

from __future__ import annotations

import pytest

from headway.routers.composite import CompositeRouter
from headway.routers.fake import FakeRouter
from headway.spec.rollout import HeaderRoutingMatch, StringMatch
from tests.scenarios.harness import canary

HEADER = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes")),)


def test_every_router_gets_every_write() -> None:
    first, second = FakeRouter(), FakeRouter()
    router, rollout = CompositeRouter((("nginx", first), ("smi", second))), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")
    router.set_header_route(rollout, "testers", HEADER)

    for each in (first, second):
        assert each.route(rollout).canary_weight == 30
        assert [name for name, _ in each.route(rollout).header_routes] == ["testers"]
    assert router.read_state(rollout, None).canary_weight == 30
    assert router.read_state(rollout, None).verified is True


def test_routers_that_disagree_report_no_weight_any_step_asks_for() -> None:
    first, second = FakeRouter(), FakeRouter()
    router, rollout = CompositeRouter((("nginx", first), ("smi", second))), canary(routed=True)
    router.set_weight(rollout, 30, "new", "old")

    second.set_weight(rollout, 0, "new", "old")  # someone reset one of them

    state = router.read_state(rollout, None)
    assert (state.canary_weight, state.verified) == (None, False)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (FakeRouter(), FakeRouter(), (40, True)),
        (FakeRouter(), FakeRouter(fail_verification=True), (40, False)),
        (FakeRouter(), FakeRouter(verifies=False), (40, None)),  # one cannot read back: trusted, cannot tell
        (FakeRouter(), FakeRouter(lag_seconds=60), (None, False)),  # one still carries the old weight
    ],
    ids=["all-verified", "one-refuted", "one-blind", "one-lagging"],
)
def test_verified_only_when_every_router_verified(
    first: FakeRouter, second: FakeRouter, expected: tuple[int, bool | None]
) -> None:
    router, rollout = CompositeRouter((("a", first), ("b", second))), canary(routed=True)

    router.set_weight(rollout, 40, "new", "old")

    state = router.read_state(rollout, None)
    assert (state.canary_weight, state.verified) == expected


def test_the_first_failure_stops_the_write_and_is_raised() -> None:
    first, second = FakeRouter(), FakeRouter()
    router, rollout = CompositeRouter((("a", first), ("b", second))), canary(routed=True)
    first.fail_next("set_weight", RuntimeError("boom"))

    with pytest.raises(RuntimeError, match="boom"):
        router.set_weight(rollout, 30, "new", "old")

    assert second.route(rollout).canary_weight == 0


def test_restore_reaches_every_router_even_when_one_fails() -> None:
    first, second = FakeRouter(), FakeRouter()
    router, rollout = CompositeRouter((("a", first), ("b", second))), canary(routed=True)
    router.set_weight(rollout, 30, "new", "old")
    first.fail_next("restore", RuntimeError("boom"))

    with pytest.raises(RuntimeError, match="boom"):
        router.restore(rollout)

    assert second.route(rollout).canary_weight == 0
