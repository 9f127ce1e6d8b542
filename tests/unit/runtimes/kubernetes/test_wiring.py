"""Admission of Rollout objects and the router registry: bad input becomes problems naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from headway.bootstrap.kubernetes import engine_for
from headway.kube.client import BlockingKube
from headway.routers.gatewayapi import GatewayApiRouter
from headway.runtimes.kubernetes.engines import admit
from tests.e2e.kubernetes.harness import rollout_body


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = rollout_body()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_a_valid_rollout_is_admitted() -> None:
    admission = admit(rollout_body())

    assert admission.problems == ()
    assert admission.rollout is not None and admission.rollout.name == "web"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_with(("spec", "replicas"), "three"), "spec.replicas"),
        (_with(("spec", "strategy", "canary", "steps"), [{"setWeight": 150}]), "steps[0].setWeight"),
        (
            _with(("spec", "strategy", "canary", "trafficRouting"), {"plugins": {"example.com/mesh": {}}}),
            "the kubernetes mode cannot drive example.com/mesh",
        ),
        (_with(("spec", "strategy"), {}), "spec.strategy"),
        (_with(("kind",), "Deployment"), "kind"),
    ],
    ids=["wrong-type", "out-of-range", "unknown-router", "no-strategy", "not-a-rollout"],
)
def test_an_invalid_rollout_yields_problems_naming_the_field(body: dict[str, Any], expected: str) -> None:
    admission = admit(body)

    assert admission.rollout is None
    assert any(expected in problem for problem in admission.problems), admission.problems


def test_the_router_is_chosen_from_traffic_routing() -> None:
    rollout = admit(rollout_body()).rollout
    assert rollout is not None
    kube = BlockingKube.__new__(BlockingKube)  # never called: building adapters makes no requests

    assert isinstance(engine_for(rollout, kube, "headway.dev").router, GatewayApiRouter)
