"""Where the proxy sends a request: deterministic weighted splits, header routes first, mirrors, failover."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from headway.runtimes.embedded.proxy_balancing import BackendSlot, RoutingTable, SmoothWeighted
from headway.runtimes.embedded.proxy_state import RoutingState, parse_state


def table(**state: object) -> RoutingTable:
    return RoutingTable(parse_state(state), {})


TWO: dict[str, Any] = {
    "stable": "old",
    "canary": "new",
    "backends": {"old": ["127.0.0.1:9001", "127.0.0.1:9002"], "new": ["127.0.0.1:9101"]},
}


@pytest.mark.parametrize(
    ("weights", "window", "expected"),
    [((20, 80), 5, (1, 4)), ((50, 50), 2, (1, 1)), ((5, 95), 20, (1, 19)), ((1, 2), 3, (1, 2)), ((0, 100), 7, (0, 7))],
    ids=["20-80", "50-50", "5-95", "1-2", "0-100"],
)
def test_every_window_of_consecutive_picks_splits_exactly(
    weights: tuple[int, int], window: int, expected: tuple[int, int]
) -> None:
    balancer = SmoothWeighted([("canary", weights[0]), ("stable", weights[1])])

    for _ in range(10):
        picks = Counter(balancer.pick() for _ in range(window))
        assert (picks["canary"], picks["stable"]) == expected


def test_smooth_round_robin_interleaves_rather_than_bursts() -> None:
    balancer = SmoothWeighted([("a", 5), ("b", 1), ("c", 1)])

    assert [balancer.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's documented order


def test_nothing_weighted_picks_nothing() -> None:
    assert SmoothWeighted([("a", 0)]).pick() is None
    assert not SmoothWeighted([])


def test_requests_split_by_revision_weight_then_round_robin_over_backends() -> None:
    routes = table(**TWO, weights={"old": 80, "new": 20})

    picks = [routes.choose({}) for _ in range(10)]
    revisions = Counter(pool.revision for pool in picks if pool is not None)
    backends = Counter(
        slot.address for pool in picks if pool and pool.revision == "old" for slot in [pool.pick()] if slot
    )

    assert revisions == {"old": 8, "new": 2}
    assert backends == {"127.0.0.1:9001": 4, "127.0.0.1:9002": 4}


def test_header_routes_win_over_weights() -> None:
    routes = table(
        **TWO,
        weights={"old": 100, "new": 0},
        headerRoutes=[{"name": "qa", "match": [{"headerName": "X-Canary", "headerValue": {"regex": "^y(es)?$"}}]}],
    )

    chosen = routes.choose({"x-canary": "yes"})
    assert chosen is not None and chosen.revision == "new"
    other = routes.choose({"x-canary": "no"})
    assert other is not None and other.revision == "old"


def test_a_canary_without_ready_backends_gets_no_traffic() -> None:
    state = {**TWO, "backends": {**TWO["backends"], "new": [{"address": "127.0.0.1:9101", "draining": True}]}}
    routes = table(**state, weights={"old": 50, "new": 50})

    assert {routes.choose({}).revision for _ in range(10)} == {"old"}  # type: ignore[union-attr]


def test_draining_backends_get_no_new_requests() -> None:
    routes = table(
        stable="old",
        weights={"old": 100},
        backends={"old": [{"address": "127.0.0.1:9001", "draining": True}, "127.0.0.1:9002"]},
    )
    pool = routes.choose({})

    assert pool is not None
    assert {pool.pick().address for _ in range(6)} == {"127.0.0.1:9002"}  # type: ignore[union-attr]


def test_with_no_weights_set_stable_serves_rather_than_nothing() -> None:
    routes = table(**TWO)

    chosen = routes.choose({})
    assert chosen is not None and chosen.revision == "old"


def test_no_backends_at_all_is_no_pool() -> None:
    assert RoutingTable(RoutingState(), {}).choose({}) is None


def test_failover_prefers_the_same_revision_then_stable() -> None:
    routes = table(**TWO, weights={"old": 50, "new": 50})
    stable, canary = routes.pools["old"], routes.pools["new"]
    refused = stable.slots[0]

    assert routes.failover(stable, refused) is stable.slots[1]
    assert routes.failover(canary, canary.slots[0]) in stable.slots


def test_mirror_routes_copy_exactly_their_share_of_matching_requests() -> None:
    routes = table(
        **TWO,
        weights={"old": 100},
        mirrorRoutes=[
            {"name": "m", "percentage": 25, "match": [{"method": {"exact": "GET"}, "path": {"prefix": "/api"}}]}
        ],
    )

    copied = [routes.mirror_target("GET", "/api/x", {}) for _ in range(100)]
    assert sum(slot is not None for slot in copied) == 25
    assert routes.mirror_target("POST", "/api/x", {}) is None
    assert all(routes.mirror_target("GET", "/other", {}) is None for _ in range(10))


def test_backend_slots_keep_their_in_flight_count_across_state_changes() -> None:
    slots: dict[str, BackendSlot] = {}
    first = RoutingTable(parse_state({**TWO, "weights": {"old": 100}}), slots)
    slot = first.pools["old"].slots[0]
    slot.inflight = 3

    second = RoutingTable(parse_state({**TWO, "weights": {"old": 50, "new": 50}}), slots)

    assert second.pools["old"].slots[0] is slot
    assert second.inflight()["127.0.0.1:9001"] == 3
