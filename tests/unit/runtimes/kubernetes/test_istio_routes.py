"""The Istio router's pure part: VirtualService HTTP routes in, routes out, as table rows."""

from __future__ import annotations

from typing import Any

import pytest

from headway.routers.istio import Target, header_route, put_route, read_canary_weight, set_weights, without_our_routes
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
