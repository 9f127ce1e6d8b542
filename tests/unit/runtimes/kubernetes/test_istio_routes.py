"""The Istio router's pure part: VirtualService HTTP routes in, routes out, as table rows."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import DriftKind
from headway.routers.istio import (
    Target,
    drift_of,
    header_route,
    missing_split,
    put_route,
    read_canary_weight,
    set_weights,
    without_our_routes,
)
from headway.spec.rollout import HeaderRoutingMatch, StringMatch

HOSTS = Target("web", "default", ("primary",), ("host", "web-canary"), ("host", "web-stable"))
SUBSETS = Target("web", "default", (), ("subset", "canary"), ("subset", "stable"))


def route(name: str, canary: int, stable: int, *, field: str = "host") -> dict[str, Any]:
    canary_value, stable_value = ("web-canary", "web-stable") if field == "host" else ("canary", "stable")
    destinations = [
        {"destination": {"host" if field == "host" else "subset": canary_value}, "weight": canary},
        {"destination": {"host" if field == "host" else "subset": stable_value}, "weight": stable},
    ]
    return {"name": name, "route": destinations}


@pytest.mark.parametrize(
    ("target", "http", "weight", "expected"),
    [
        (HOSTS, [route("primary", 0, 100)], 30, [route("primary", 30, 70)]),
        (
            HOSTS,
            [route("primary", 0, 100), route("other", 0, 100)],
            30,
            [route("primary", 30, 70), route("other", 0, 100)],
        ),
        (SUBSETS, [route("any", 0, 100, field="subset")], 60, [route("any", 60, 40, field="subset")]),
        (
            SUBSETS,
            [route("a", 0, 100, field="subset"), route("b", 0, 100, field="subset")],
            60,
            [route("a", 0, 100, field="subset"), route("b", 0, 100, field="subset")],
        ),
    ],
    ids=["named-route", "other-routes-untouched", "only-route-by-default", "ambiguous-without-names"],
)
def test_weights_go_to_the_selected_routes(
    target: Target, http: list[dict[str, Any]], weight: int, expected: list[dict[str, Any]]
) -> None:
    assert set_weights(http, target, weight) == expected


def test_header_routes_go_in_front_read_back_ignores_them_and_they_are_removed() -> None:
    http = [route("primary", 10, 90)]
    match = [HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes"))]

    added = put_route(http, header_route(http, HOSTS, "testers", match), "testers")

    assert added[0]["name"] == "headway-testers"
    assert added[0]["match"] == [{"headers": {"X-Canary": {"exact": "yes"}}}]
    assert added[0]["route"] == [{"destination": {"host": "web-canary"}, "weight": 100}]
    assert read_canary_weight(added, HOSTS) == 10
    assert without_our_routes(added) == http


# --- routes that cannot carry the split -------------------------------------------------------------------------

EXPECTED = ExpectedRouting(canary_weight=50, canary_hash="new", stable_hash="old")


def stable_only(name: str) -> dict[str, Any]:
    return {"name": name, "route": [{"destination": {"host": "web-stable"}, "weight": 100}]}


@pytest.mark.parametrize(
    ("target", "http", "missing"),
    [
        (HOSTS, [route("primary", 0, 100)], None),
        (HOSTS, [route("primry", 0, 100)], "no HTTP route named primary (spec.strategy.canary.trafficRouting.istio"),
        (HOSTS, [stable_only("primary")], "'primary' has no destination with host web-canary"),
        (SUBSETS, [route("a", 0, 100, field="subset"), route("b", 0, 100, field="subset")], "2 HTTP routes and none"),
        (SUBSETS, [], "0 HTTP routes and none named"),
    ],
    ids=["named-route", "misspelt-route", "no-canary-destination", "ambiguous-without-names", "no-routes"],
)
def test_routes_that_cannot_carry_the_split_are_named(
    target: Target, http: list[dict[str, Any]], missing: str | None
) -> None:
    found = missing_split(http, target)
    if missing is None:
        assert found is None
    else:
        assert found is not None and found.startswith("VirtualService default/web: ")
        assert missing in found


def test_a_misspelt_route_is_weight_drift_not_agreement() -> None:
    """The reviewer's VirtualService: ``routes: [primary]`` against a route named ``primry``. The old code wrote
    nothing, read back None and reported no drift."""
    http = [route("primry", 0, 100)]

    assert set_weights(http, HOSTS, 50) == http
    assert read_canary_weight(http, HOSTS) is None
    (drift,) = drift_of(http, HOSTS, EXPECTED)
    assert drift.kind is DriftKind.WEIGHT
    assert "no HTTP route named primary" in drift.found and "has primry" in drift.found


def test_a_stable_only_route_keeps_its_weight() -> None:
    """Weighting the lone stable destination 50 would be a VirtualService Istio rejects (weights must sum to 100)."""
    assert set_weights([stable_only("primary")], HOSTS, 50) == [stable_only("primary")]


def test_an_unreadable_canary_weight_drifts() -> None:
    http = [route("primary", 0, 100)]
    http[0]["route"][0]["weight"] = "half"

    assert read_canary_weight(http, HOSTS) is None
    (drift,) = drift_of(http, HOSTS, EXPECTED)
    assert "unreadable weights" in drift.found
