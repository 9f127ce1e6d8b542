"""The Gateway API router's pure part: HTTPRoute rules in, rules out, as table rows."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import DriftKind
from headway.routers.base import Verification
from headway.routers.gatewayapi import (
    Target,
    drift_of,
    header_rule,
    mirror_rule,
    missing_split,
    put_rule,
    read_canary_weight,
    set_weights,
    verification,
    without_our_rules,
)
from headway.spec.rollout import HeaderRoutingMatch, RouteMatch, StringMatch

TARGET = Target(route="web", namespace="default", canary_service="web-canary", stable_service="web-stable")


def rule(stable: int | None, canary: int | None, *, name: str | None = None) -> dict[str, Any]:
    refs = []
    if stable is not None:
        refs.append({"name": "web-stable", "port": 80, "weight": stable})
    if canary is not None:
        refs.append({"name": "web-canary", "port": 80, "weight": canary})
    body: dict[str, Any] = {"backendRefs": refs}
    if name:
        body["name"] = name
    return body


@pytest.mark.parametrize(
    ("rules", "weight", "expected"),
    [
        ([rule(100, 0)], 25, [rule(75, 25)]),
        ([rule(100, 0), rule(100, 0)], 10, [rule(90, 10), rule(90, 10)]),
        ([rule(60, 40)], 0, [rule(100, 0)]),
        # A rule holding one of the Services splits nothing: weighting its lone ref (to 0 at promotion) would
        # only make the gateway answer 500; `set_weight` refuses such a route instead (missing_split).
        ([rule(100, None)], 30, [rule(100, None)]),
        ([{"backendRefs": [{"name": "other", "weight": 1}]}], 50, [{"backendRefs": [{"name": "other", "weight": 1}]}]),
        ([{"matches": []}], 50, [{"matches": []}]),
    ],
    ids=["one-rule", "every-rule", "back-to-zero", "stable-only-rule", "foreign-backends-untouched", "no-backends"],
)
def test_weights_are_set_on_canary_and_stable_refs_only(
    rules: list[dict[str, Any]], weight: int, expected: list[dict[str, Any]]
) -> None:
    assert set_weights(rules, TARGET, weight) == expected


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([rule(75, 25)], 25),
        ([rule(1, 1)], 50),
        ([rule(0, 0)], 0),
        ([rule(100, None)], None),
        ([rule(0, 100, name="headway-testers"), rule(90, 10)], 10),
        ([], None),
    ],
    ids=["weights", "relative-weights", "zero-total", "no-canary-ref", "header-rules-ignored", "no-rules"],
)
def test_the_canary_weight_reads_back(rules: list[dict[str, Any]], expected: int | None) -> None:
    assert read_canary_weight(rules, TARGET) == expected


def test_header_rules_go_in_front_and_are_removed_by_name() -> None:
    match = [HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(prefix="yes.v"))]
    users = [rule(100, 0)]

    added = put_rule(users, header_rule(users, TARGET, "testers", match), "testers")

    assert added[0] == {
        "name": "headway-testers",
        "matches": [{"headers": [{"name": "X-Canary", "type": "RegularExpression", "value": "^yes\\.v.*"}]}],
        "backendRefs": [{"name": "web-canary", "port": 80, "weight": 100}],
    }
    assert added[1:] == users
    assert put_rule(added, None, "testers") == users
    assert without_our_rules(added) == users


def test_a_mirror_rule_serves_from_stable_and_copies_to_the_canary() -> None:
    match = [RouteMatch(path=StringMatch(prefix="/api"), method=StringMatch(exact="get"))]

    mirror = mirror_rule([rule(100, 0)], TARGET, "shadow", match, 20)

    assert mirror["matches"] == [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}]
    assert mirror["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-canary", "port": 80}, "percent": 20}}
    ]
    assert mirror["backendRefs"] == [{"name": "web-stable", "port": 80, "weight": 100}]


def _parent(accepted: str, resolved: str, observed: int = 2) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Accepted", "status": accepted, "observedGeneration": observed},
            {"type": "ResolvedRefs", "status": resolved, "observedGeneration": observed},
        ]
    }


@pytest.mark.parametrize(
    ("parents", "expected"),
    [
        ([], Verification.NOT_IMPLEMENTED),
        ([_parent("True", "True")], Verification.VERIFIED),
        ([_parent("True", "False")], Verification.NOT_VERIFIED),
        ([_parent("False", "True")], Verification.NOT_VERIFIED),
        ([_parent("True", "True", observed=1)], Verification.NOT_VERIFIED),
        ([_parent("True", "True"), _parent("Unknown", "True")], Verification.NOT_VERIFIED),
    ],
    ids=["no-gateway-status", "accepted", "unresolved-refs", "refused", "older-generation", "one-parent-pending"],
)
def test_verification_follows_the_route_status(parents: list[dict[str, Any]], expected: Verification) -> None:
    route = {"metadata": {"generation": 2}, "status": {"parents": parents}}

    assert verification(route) is expected


# --- a route that cannot carry the split ------------------------------------------------------------------------

EXPECTED = ExpectedRouting(canary_weight=50, canary_hash="new", stable_hash="old")


@pytest.mark.parametrize(
    ("rules", "missing"),
    [
        ([rule(100, 0)], None),
        ([rule(100, None), rule(90, 10)], None),
        ([rule(100, None)], "rules[0] lacks web-canary"),
        ([rule(None, 100, name="api")], "rules[0] (api) lacks web-stable"),
        ([{"backendRefs": [{"name": "other"}]}], "rules[0] lacks web-stable and web-canary"),
        ([rule(0, 100, name="headway-testers")], "it has no rules"),
        ([], "it has no rules"),
    ],
    ids=["both", "one-of-two-rules", "stable-only", "canary-only", "foreign", "only-ours", "empty"],
)
def test_a_route_without_a_rule_for_both_services_is_named(rules: list[dict[str, Any]], missing: str | None) -> None:
    found = missing_split(rules, TARGET)
    if missing is None:
        assert found is None
    else:
        assert found is not None and found.startswith("HTTPRoute default/web: no rule has backendRefs to both")
        assert found.endswith(f"({missing})")


def test_a_stable_only_route_is_weight_drift_not_agreement() -> None:
    """The reviewer's route: the canary ref gone, so nothing to weigh. The old drift check compared the rules
    with themselves (set_weights changed nothing that mattered) and found no drift."""
    (drift,) = drift_of([rule(100, None)], TARGET, EXPECTED)

    assert drift.kind is DriftKind.WEIGHT
    assert "no rule has backendRefs to both web-stable and web-canary" in drift.found


def test_an_unreadable_weight_reads_back_as_none_and_drifts() -> None:
    rules = [{"backendRefs": [{"name": "web-stable", "weight": "lots"}, {"name": "web-canary", "weight": 50}]}]

    assert read_canary_weight(rules, TARGET) is None
    (drift,) = drift_of(rules, TARGET, EXPECTED)
    assert drift.kind is DriftKind.WEIGHT and "unreadable weights" in drift.found
    assert set_weights(rules, TARGET, 50)[0]["backendRefs"][0]["weight"] == 50  # the repair rewrites it
