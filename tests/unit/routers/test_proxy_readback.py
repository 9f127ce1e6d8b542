"""The embedded proxy's ``GET /state`` compared with what Headway set: only real differences are drift."""

from __future__ import annotations

from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import DriftKind
from headway.routers.proxy_readback import drift_of, routed_backends, written_split
from headway.spec.rollout import HeaderRoutingMatch, RouteMatch, StringMatch

HEADER = (HeaderRoutingMatch(header_name="X-Tester", header_value=StringMatch(exact="yes")),)
MIRROR = (RouteMatch(path=StringMatch(prefix="/api"), headers={"X-Shadow": StringMatch(exact="1")}),)
EXPECTED = ExpectedRouting(
    canary_weight=20,
    canary_hash="new",
    stable_hash="old",
    header_routes=(("testers", HEADER),),
    mirror_routes=(("shadow", MIRROR, 30),),
)


def proxy_state(**changes: Any) -> dict[str, Any]:
    """The state document the proxy serves after the setters wrote ``EXPECTED`` (header names lowercased)."""
    state: dict[str, Any] = {
        **written_split(20, "new", "old"),
        "backends": {"old": [{"address": "127.0.0.1:9001", "draining": False}], "new": []},
        "headerRoutes": [{"name": "testers", "match": [{"headerName": "x-tester", "headerValue": {"exact": "yes"}}]}],
        "mirrorRoutes": [
            {
                "name": "shadow",
                "percentage": 30,
                "match": [{"path": {"prefix": "/api"}, "headers": {"x-shadow": {"exact": "1"}}}],
            }
        ],
    }
    return state | changes


def test_what_the_setters_wrote_is_not_drift_despite_lowercased_header_names() -> None:
    assert drift_of(proxy_state(), EXPECTED) == ()


def test_each_changed_part_is_named() -> None:
    state = proxy_state(
        weights={"old": 100},
        headerRoutes=[],
        mirrorRoutes=[{"name": "shadow", "percentage": 100, "match": [{"path": {"prefix": "/"}}]}],
    )

    drift = drift_of(state, EXPECTED)

    assert [(d.kind, d.name) for d in drift] == [
        (DriftKind.WEIGHT, ""),
        (DriftKind.HEADER_ROUTE, "testers"),
        (DriftKind.MIRROR_ROUTE, "shadow"),
    ]
    assert drift[0].expected == "20 to canary new, the rest to stable old"


def test_a_stable_revision_swapped_behind_our_back_is_weight_drift() -> None:
    drift = drift_of(proxy_state(stable="other", weights={"other": 80, "new": 20}), EXPECTED)

    assert [d.kind for d in drift] == [DriftKind.WEIGHT]


def test_draining_backends_are_not_counted_as_routed() -> None:
    state = proxy_state(backends={"old": ["127.0.0.1:1", {"address": "127.0.0.1:2", "draining": True}], "new": []})

    assert routed_backends(state) == {"old": 1, "new": 0}
