"""Routers fail closed on hostile live objects: whole passes (`run_pass`) against the Kubernetes routers on the
emulator (real HTTP on 127.0.0.1), with the user's routing objects edited behind Headway's back.

Each story is one a reviewer saw promote, or crash every pass, on the earlier code:

- an HTTPRoute with no rule pointing at both Services: the weight was never written, read back as None, trusted
  from the status, and the rollout went Healthy (the lone stable ref even got weight 0 at promotion: a 500 for
  every request);
- an Istio rollout naming a route the VirtualService does not have (``primary`` against ``primry``): the same;
- a hand-edited NGINX canary-weight annotation (``100%``): a ValueError out of every pass, drift never repaired;
- a router that reads back no weight at all (verified False): the status's last write was trusted and the steps
  passed without any canary traffic seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.decision import Event
from headway.core.observation import RouterState
from headway.engine.reconcile import run_pass
from headway.kube.client import HTTP_ROUTES
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.base import TrafficRouter
from headway.routers.fake import FakeRouter
from headway.routers.gatewayapi import GatewayApiRouter
from headway.routers.istio import VIRTUAL_SERVICES, IstioRouter
from headway.routers.nginx import INGRESSES, WEIGHT, NginxRouter
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import Rollout
from headway.spec.status import Phase, RolloutStatus
from headway.stores.memory import MemoryStore
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import make_rollout

KEY = "default/web"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": 10}}]


@dataclass
class Driver:
    """Passes of the real shell in virtual time, every event kept."""

    router: TrafficRouter
    platform: FakePlatform = field(default_factory=FakePlatform)
    runs: ScriptedRuns = field(default_factory=ScriptedRuns)
    store: MemoryStore = field(default_factory=MemoryStore)
    now: datetime = EPOCH
    events: list[Event] = field(default_factory=list)
    statuses: list[RolloutStatus] = field(default_factory=list)

    def go(self, rollout: Rollout, passes: int) -> RolloutStatus:
        for _ in range(passes):
            self.now += timedelta(seconds=5)
            self.platform.advance(self.now)
            self.runs.advance(self.now)
            result = run_pass(
                rollout, now=self.now, platform=self.platform, router=self.router, runs=self.runs, store=self.store
            )
            self.events.extend(result.outcome().events)
            self.statuses.append(self.status)
        return self.status

    @property
    def status(self) -> RolloutStatus:
        return self.store.load(KEY)[0]

    def messages(self, reason: str) -> list[str]:
        return [event.message for event in self.events if event.reason == reason]


def rollout(routing: dict[str, Any], image: str) -> Rollout:
    strategy = {"canaryService": "web-canary", "stableService": "web-stable", "trafficRouting": routing}
    return make_rollout({"canary": {**strategy, "steps": STEPS}}, image=image)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


# --- Gateway API -----------------------------------------------------------------------------------------------

GATEWAY = {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}}


def http_route(api: ApiServer) -> dict[str, Any]:
    route = api.kube.get(HTTP_ROUTES, "web", "default")
    assert route is not None
    return route


def drop_canary_ref(api: ApiServer) -> None:
    """A user (or a GitOps sync) leaves the route pointing at the stable Service only."""
    route = http_route(api)
    rules = [
        {**rule, "backendRefs": [r for r in rule["backendRefs"] if r["name"] != "web-canary"]}
        for rule in route["spec"]["rules"]
    ]
    api.kube.patch(HTTP_ROUTES, "web", "default", {"spec": {"rules": rules}})


@pytest.mark.parametrize("when", ["before-the-update", "during-the-pause"])
def test_a_route_without_the_canary_ref_is_an_error_never_a_promotion(api: ApiServer, when: str) -> None:
    refs = [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]
    api.kube.create(
        HTTP_ROUTES, {"metadata": {"name": "web", "namespace": "default"}, "spec": {"rules": [{"backendRefs": refs}]}}
    )
    driver = Driver(GatewayApiRouter(api.kube))
    assert driver.go(rollout(GATEWAY, "web:1"), 6).phase is Phase.HEALTHY
    v2 = rollout(GATEWAY, "web:2")
    if when == "before-the-update":
        drop_canary_ref(api)
    else:
        driver.go(v2, 1)
        assert driver.status.current_step_index == 1  # at the pause, the canary at 50%
        drop_canary_ref(api)
    old_stable = driver.status.stable_rs

    driver.go(v2, 12)

    assert driver.status.stable_rs == old_stable, "promoted with no canary traffic ever routed"
    assert all(status.phase is not Phase.HEALTHY for status in driver.statuses[-6:])
    failures = driver.messages("ActionFailed")
    assert (
        failures and "HTTPRoute default/web: no rule has backendRefs to both web-stable and web-canary" in failures[-1]
    )
    assert "rules[0] lacks web-canary" in failures[-1]
    (rule,) = http_route(api)["spec"]["rules"]
    assert [ref["name"] for ref in rule["backendRefs"]] == ["web-stable"]
    assert rule["backendRefs"][0]["weight"] > 0, "the lone stable ref was weighted 0: the gateway answers 500"


# --- Istio -----------------------------------------------------------------------------------------------------

ISTIO = {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}


def test_a_route_name_the_virtual_service_lacks_is_an_error_never_a_promotion(api: ApiServer) -> None:
    api.emulator.declare("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    http = [
        {
            "name": "primry",
            "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0},
            ],
        }
    ]
    service = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"http": http}}
    api.kube.create(VIRTUAL_SERVICES, service)
    driver = Driver(IstioRouter(api.kube))

    driver.go(rollout(ISTIO, "web:1"), 4)
    driver.go(rollout(ISTIO, "web:2"), 10)

    assert all(status.phase is not Phase.HEALTHY for status in driver.statuses)
    failures = driver.messages("ActionFailed")
    assert failures and "VirtualService default/web: no HTTP route named primary" in failures[-1]
    assert "the VirtualService has primry" in failures[-1]
    live = api.kube.get(VIRTUAL_SERVICES, "web", "default")
    assert live is not None and live["spec"]["http"] == http


# --- NGINX -----------------------------------------------------------------------------------------------------

NGINX = {"nginx": {"stableIngress": "web"}}


def test_a_hand_edited_canary_weight_is_drift_repaired_not_a_crash(api: ApiServer) -> None:
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    api.kube.create(
        INGRESSES,
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"rules": [{"http": {"paths": paths}}]}},
    )
    driver = Driver(NginxRouter(api.kube))
    v2 = rollout(NGINX, "web:2")
    driver.go(rollout(NGINX, "web:1"), 5)
    assert driver.go(v2, 8).phase is Phase.HEALTHY
    canary = api.kube.get(INGRESSES, "web-web-canary", "default")
    assert canary is not None and canary["metadata"]["annotations"][WEIGHT] == "0"

    api.kube.patch(INGRESSES, "web-web-canary", "default", {"metadata": {"annotations": {WEIGHT: "100%"}}})
    driver.go(v2, 1)  # on the earlier code: ValueError out of run_pass, every pass

    drift = driver.messages("TrafficDrift")
    assert drift and "100%" in drift[-1]
    repaired = api.kube.get(INGRESSES, "web-web-canary", "default")
    assert repaired is not None and repaired["metadata"]["annotations"][WEIGHT] == "0"
    assert driver.go(v2, 2).phase is Phase.HEALTHY


# --- a router that reads back nothing --------------------------------------------------------------------------


class BlindRouter(FakeRouter):
    """Takes every write but reads back no weight (verified False): what a route edited under the rollout, or an
    unparsable live value, looks like to the core."""

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        state = super().read_state(rollout, expected)
        if expected is None:
            return state
        return RouterState(canary_weight=None, verified=False, drift=state.drift)


def test_no_step_passes_on_a_weight_the_router_cannot_read_back() -> None:
    router = BlindRouter()
    driver = Driver(router)
    v1 = rollout(ISTIO, "web:1")
    driver.go(v1, 6)
    first_stable = driver.status.stable_rs

    driver.go(rollout(ISTIO, "web:2"), 20)

    assert driver.status.stable_rs == first_stable
    assert driver.status.current_step_index == 0, "a setWeight step passed on a weight nobody read back"
    assert driver.status.phase is not Phase.HEALTHY
    assert "read-back not verified" in (driver.status.message or "")
