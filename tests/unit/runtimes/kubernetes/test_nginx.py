"""The NGINX router: canary Ingress objects as table rows, and the adapter on the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError
from headway.core.observation import DriftKind
from headway.routers.nginx import (
    BY_HEADER,
    BY_HEADER_VALUE,
    INGRESSES,
    WEIGHT,
    NginxRouter,
    Target,
    desired_object,
    drift_of,
    parse_weight,
)
from headway.spec.rollout import HeaderRoutingMatch, Rollout, StringMatch
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import make_rollout

TARGET = Target("web", "web-web-canary", "default", "web-canary", "web-stable")


def ingress() -> dict[str, Any]:
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return {
        "metadata": {"name": "web", "namespace": "default", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "web.example", "http": {"paths": [path]}}]},
    }


@pytest.mark.parametrize("weight", [0, 25, 100])
def test_the_canary_ingress_copies_the_users_and_points_at_the_canary(weight: int) -> None:
    canary = desired_object(ingress(), TARGET, weight, "web", None)

    assert canary["metadata"]["name"] == "web-web-canary"
    assert canary["metadata"]["annotations"] == {
        "kubernetes.io/ingress.class": "nginx",
        "nginx.ingress.kubernetes.io/canary": "true",
        WEIGHT: str(weight),
    }
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "web-canary", "port": {"number": 80}}}


def nginx_rollout() -> Rollout:
    strategy = {
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 20}],
    }
    return make_rollout({"canary": strategy})


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        server.kube.create(INGRESSES, ingress())
        yield server


def test_weights_and_header_routes_land_on_the_canary_ingress_and_restore_removes_it(api: ApiServer) -> None:
    router, rollout = NginxRouter(api.kube), nginx_rollout()
    header = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="always")),)

    router.set_weight(rollout, 30, "new", "old")
    router.set_header_route(rollout, "testers", header)
    router.set_weight(rollout, 30, "new", "old")

    canary = api.kube.get(INGRESSES, "web-web-canary", "default")
    assert canary is not None
    assert canary["metadata"]["annotations"][WEIGHT] == "30"
    assert canary["metadata"]["annotations"][BY_HEADER_VALUE] == "always"
    assert router.read_state(rollout, None).canary_weight == 30

    router.remove_managed_routes(rollout)
    canary = api.kube.get(INGRESSES, "web-web-canary", "default")
    assert canary is not None and BY_HEADER not in canary["metadata"]["annotations"]

    router.restore(rollout)
    assert api.kube.get(INGRESSES, "web-web-canary", "default") is None
    stable = api.kube.get(INGRESSES, "web", "default")
    assert stable is not None and stable["spec"] == ingress()["spec"]


def test_mirroring_is_refused_naming_the_step(api: ApiServer) -> None:
    from headway.spec.rollout import RouteMatch

    with pytest.raises(PermanentError, match="shadow"):
        NginxRouter(api.kube).set_mirror_route(
            nginx_rollout(), "shadow", (RouteMatch(path=StringMatch(prefix="/")),), 10
        )


def test_a_deleted_canary_ingress_or_header_reads_back_as_drift(api: ApiServer) -> None:
    router, rollout = NginxRouter(api.kube), nginx_rollout()
    header = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="always")),)
    router.set_weight(rollout, 30, "new", "old")
    router.set_header_route(rollout, "testers", header)
    expected = ExpectedRouting(30, "new", "old", header_routes=(("testers", header),))
    assert router.read_state(rollout, expected).drift == ()

    router.set_header_route(rollout, "testers", None)
    assert [(d.kind, d.name) for d in router.read_state(rollout, expected).drift] == [
        (DriftKind.HEADER_ROUTE, "testers")
    ]

    api.kube.delete(INGRESSES, "web-web-canary", "default")
    drift = router.read_state(rollout, expected).drift
    assert drift[0].kind == DriftKind.WEIGHT and drift[0].found == "no canary Ingress"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("35", 35),
        ("100", 100),
        (" 7 ", 7),
        ("100%", None),
        ("", None),
        ("-5", None),
        ("101", None),
        ("1e2", None),
        ("٣", None),
        ("0" * 5000, None),
    ],
)
def test_the_weight_annotation_is_parsed_defensively(value: str, expected: int | None) -> None:
    """A hand edit is unreadable (None), never a ValueError out of every pass; a huge digit string is refused
    before int() (which would spend time on it, or refuse it with its own ValueError)."""
    assert parse_weight({WEIGHT: value}) == expected


def test_an_absent_weight_annotation_is_zero() -> None:
    assert parse_weight({}) == 0


def test_an_unparsable_weight_is_drift_and_reads_back_unverified(api: ApiServer) -> None:
    router, rollout = NginxRouter(api.kube), nginx_rollout()
    router.set_weight(rollout, 20, "new", "old")
    api.kube.patch(INGRESSES, "web-web-canary", "default", {"metadata": {"annotations": {WEIGHT: "100%"}}})
    expected = ExpectedRouting(canary_weight=20, canary_hash="new", stable_hash="old")

    state = router.read_state(rollout, expected)

    assert state.canary_weight is None and state.verified is False
    (drift,) = state.drift
    assert drift.kind is DriftKind.WEIGHT and drift.found == "canary weight 100%"
    router.set_weight(rollout, 20, "new", "old")  # the repair
    assert router.read_state(rollout, expected).canary_weight == 20


def test_drift_of_names_the_live_annotation() -> None:
    canary = {"metadata": {"annotations": {WEIGHT: "half"}}}
    expected = ExpectedRouting(canary_weight=0, canary_hash="new", stable_hash="old")

    (drift,) = drift_of(canary, expected)

    assert drift.found == "canary weight half"
