"""The SMI router: TrafficSplit objects as table rows, and the adapter on the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError
from headway.core.observation import DriftKind
from headway.routers.smi import TRAFFIC_SPLITS, SmiRouter, Target, canary_weight_of, desired_object
from headway.spec.rollout import HeaderRoutingMatch, Rollout, StringMatch
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import make_rollout

TARGET = Target(
    name="web", namespace="default", root_service="web", canary_service="web-canary", stable_service="web-stable"
)


def split(canary: int, stable: int) -> dict[str, Any]:
    backends = [{"service": "web-canary", "weight": canary}, {"service": "web-stable", "weight": stable}]
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {"service": "web", "backends": backends}}


@pytest.mark.parametrize(
    ("current", "weight", "backends"),
    [
        (None, 10, [("web-canary", 10), ("web-stable", 90)]),
        (split(10, 90), 50, [("web-canary", 50), ("web-stable", 50)]),
        (split(50, 50), 0, [("web-canary", 0), ("web-stable", 100)]),
    ],
    ids=["created", "shifted", "back-to-stable"],
)
def test_the_desired_split(current: dict[str, Any] | None, weight: int, backends: list[tuple[str, int]]) -> None:
    desired = desired_object(current, TARGET, weight, "web")

    assert [(b["service"], b["weight"]) for b in desired["spec"]["backends"]] == backends
    assert desired["spec"]["service"] == "web"
    assert desired["metadata"]["labels"]["headway.dev/rollout"] == "web"


@pytest.mark.parametrize(
    ("backends", "expected"),
    [(split(25, 75), 25), (split(1, 1), 50), (split(0, 0), 0), ({"spec": {"backends": []}}, None)],
    ids=["percent", "relative", "zero", "no-canary"],
)
def test_the_weight_reads_back(backends: dict[str, Any], expected: int | None) -> None:
    assert canary_weight_of(backends, TARGET) == expected


def smi_rollout() -> Rollout:
    strategy = {
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"smi": {"rootService": "web"}},
        "steps": [{"setWeight": 20}],
    }
    return make_rollout({"canary": strategy})


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        server.emulator.declare("split.smi-spec.io", "v1alpha2", "trafficsplits", "TrafficSplit")
        yield server


def test_the_router_owns_its_split_from_first_weight_to_restore(api: ApiServer) -> None:
    router, rollout = SmiRouter(api.kube), smi_rollout()

    router.set_weight(rollout, 20, "new", "old")
    router.set_weight(rollout, 40, "new", "old")
    router.set_weight(rollout, 40, "new", "old")

    assert router.read_state(rollout, None).canary_weight == 40
    assert router.read_state(rollout, None).verified is None
    router.restore(rollout)
    assert api.kube.get(TRAFFIC_SPLITS, "web", "default") is None
    assert router.read_state(rollout, None).canary_weight == 0


def test_header_routes_are_refused_by_name() -> None:
    router = SmiRouter.__new__(SmiRouter)
    match = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="1")),)

    with pytest.raises(PermanentError, match="testers"):
        router.set_header_route(smi_rollout(), "testers", match)
    router.set_header_route(smi_rollout(), "testers", None)  # removing what never existed is fine


def test_a_split_edited_or_deleted_reads_back_as_drift(api: ApiServer) -> None:
    router, rollout = SmiRouter(api.kube), smi_rollout()
    router.set_weight(rollout, 40, "new", "old")
    expected = ExpectedRouting(40, "new", "old")
    assert router.read_state(rollout, expected).drift == ()

    api.kube.delete(TRAFFIC_SPLITS, "web", "default")
    drift = router.read_state(rollout, expected).drift
    assert [d.kind for d in drift] == [DriftKind.WEIGHT] and drift[0].found == "no TrafficSplit"


@pytest.mark.parametrize(
    "weight",
    ["500m", "half", None, -1, True],
    ids=["quantity", "text", "null-is-zero", "negative", "bool"],
)
def test_an_unparsable_backend_weight_reads_as_unknown_not_a_crash(weight: object) -> None:
    split = {
        "spec": {"backends": [{"service": "web-canary", "weight": weight}, {"service": "web-stable", "weight": 50}]}
    }

    expected = 0 if weight is None else None
    assert canary_weight_of(split, TARGET) == expected
