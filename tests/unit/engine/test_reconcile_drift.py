"""The data plane is verified every pass: drift found by reading the fake router back, reported, and set again.

Virtual time, the real core, the fake platform and the fake router. The fake's `tamper` edits the routing behind
the engine's back and `restart` replaces the data plane without its routing; each test would fail on the code that
only read back the weight right after setting it: the status still said the weight was set, so nothing was
written again and the rollout stayed Healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from headway.core import actions as a
from headway.core.dataplane import ROUTER_RESTARTED, TRAFFIC_DRIFT
from headway.core.errors import PermanentError, TemporaryError
from headway.engine.reconcile import PassResult, run_pass
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.fake import FakeRouter, Route
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import HeaderRoutingMatch, Rollout, StringMatch
from headway.spec.status import Phase, RolloutStatus
from headway.stores.memory import MemoryStore
from tests.scenarios.harness import canary

KEY = "default/web"
TESTERS = (HeaderRoutingMatch(header_name="X-Tester", header_value=StringMatch(exact="yes")),)
STEPS: list[dict[str, Any]] = [
    {"setHeaderRoute": {"name": "testers", "match": [{"headerName": "X-Tester", "headerValue": {"exact": "yes"}}]}},
    {"setWeight": 20},
    {"pause": {}},
]


@dataclass
class World:
    rollout: Rollout = field(default_factory=lambda: canary(routed=True))
    platform: FakePlatform = field(default_factory=FakePlatform)
    router: FakeRouter = field(default_factory=FakeRouter)
    runs: ScriptedRuns = field(default_factory=ScriptedRuns)
    store: MemoryStore = field(default_factory=MemoryStore)
    now: datetime = EPOCH

    def run(self, seconds: float = 1.0) -> PassResult:
        self.now += timedelta(seconds=seconds)
        for part in (self.platform, self.router, self.runs):
            part.advance(self.now)
        return run_pass(
            self.rollout, now=self.now, platform=self.platform, router=self.router, runs=self.runs, store=self.store
        )

    def status(self) -> RolloutStatus:
        return self.store.load(KEY)[0]

    def settle(self, phase: Phase, passes: int = 10) -> None:
        for _ in range(passes):
            self.run()
            if self.status().phase == phase:
                return
        raise AssertionError(f"not {phase} after {passes} passes: {self.status().phase} {self.status().message}")


def healthy(**changes: Any) -> World:
    world = World(**changes)
    world.settle(Phase.HEALTHY)
    return world


def reasons(result: PassResult) -> list[str]:
    return [event.reason for event in result.outcome().events]


def drift_message(result: PassResult) -> str:
    return next(event.message for event in result.outcome().events if event.reason == TRAFFIC_DRIFT)


def test_a_weight_changed_behind_the_engines_back_is_reported_and_set_again() -> None:
    world = healthy()
    stable = world.status().stable_rs
    world.router.tamper(world.rollout, lambda route: replace(route, canary_weight=100, canary_hash="elsewhere"))

    result = world.run()

    assert TRAFFIC_DRIFT in reasons(result)
    message = drift_message(result)
    assert "weight: expected all traffic to" in message and "100 to canary elsewhere" in message
    assert "an edit" in drift_message(result)
    assert a.SetWeight(canary_weight=0, canary_hash=stable, stable_hash=stable) in result.applied
    assert world.router.route(world.rollout).canary_hash == stable
    assert world.status().phase == Phase.HEALTHY  # the repair was read back within the same pass
    assert TRAFFIC_DRIFT not in reasons(world.run()), "repaired once, quiet afterwards"


def test_a_removed_header_route_is_set_again_and_an_added_one_removed() -> None:
    world = World(rollout=canary(STEPS, routed=True))
    world.settle(Phase.HEALTHY)
    world.rollout = canary(STEPS, routed=True, image="example/web:2.0.0")
    world.settle(Phase.PAUSED)
    assert [name for name, _ in world.router.desired(world.rollout).header_routes] == ["testers"]
    world.router.tamper(world.rollout, lambda route: replace(route, header_routes=(("sneaky", TESTERS),)))

    result = world.run()

    message = drift_message(result)
    assert "header route 'testers': expected present, found missing" in message
    assert "header route 'sneaky': expected absent" in message
    assert a.SetHeaderRoute(name="testers", match=TESTERS) in result.applied
    assert a.SetHeaderRoute(name="sneaky", match=None) in result.applied
    assert world.router.desired(world.rollout).header_routes == (("testers", TESTERS),)
    assert world.status().phase == Phase.PAUSED and world.status().current_step_index == 2


def test_a_restarted_data_plane_that_lost_its_routing_is_named_and_repaired() -> None:
    world = World(rollout=canary(STEPS, routed=True))
    world.settle(Phase.HEALTHY)
    world.rollout = canary(STEPS, routed=True, image="example/web:2.0.0")
    world.settle(Phase.PAUSED)
    world.router.restart(world.rollout)
    assert world.router.route(world.rollout) == Route()

    result = world.run()

    assert ROUTER_RESTARTED in reasons(result)
    message = drift_message(result)
    assert "the data plane was replaced (the fake data plane was replaced (instance 1 → 2))" in message
    assert "weight: expected 20 to canary" in message
    route = world.router.route(world.rollout)
    assert route.canary_weight == 20 and [name for name, _ in route.header_routes] == ["testers"]


def test_no_healthy_while_the_stable_revision_has_no_backend_routed() -> None:
    world = healthy()
    stable = world.status().stable_rs
    assert stable is not None
    world.router.set_backends(world.rollout, {stable: 0})

    result = world.run()

    assert world.status().phase == Phase.PROGRESSING
    assert world.status().message == f"the stable revision {stable} has no ready backends routed to it"
    healthy_condition = world.status().condition("Healthy")
    assert healthy_condition is not None and healthy_condition.status == "False"
    assert TRAFFIC_DRIFT not in reasons(result), "backends are the runtime's: it reports what it repairs"
    assert result.requeue_after is not None and result.requeue_after <= 1.0, "looked at again soon"

    world.router.set_backends(world.rollout, {stable: 4})  # what the runtime's backend sync does
    world.run()
    assert world.status().phase == Phase.HEALTHY


def test_no_healthy_while_the_router_does_not_verify_or_cannot_be_read() -> None:
    world = healthy()
    world.router.fail_verification = True
    world.run()
    assert world.status().phase == Phase.PROGRESSING
    assert "does not confirm the routing" in world.status().message

    world.router.fail_verification = False
    world.run()
    assert world.status().phase == Phase.HEALTHY

    world.router.fail_next("read_weight", TemporaryError("proxy down", delay=2.0))
    result = world.run()
    assert "RouterUnreadable" in reasons(result)
    assert world.status().phase == Phase.PROGRESSING


def test_a_drift_whose_repair_fails_is_not_left_healthy() -> None:
    world = healthy()
    world.router.tamper(world.rollout, lambda route: replace(route, canary_weight=100, canary_hash="elsewhere"))
    world.router.fail_next("set_weight", PermanentError("the router refused the write"))

    result = world.run()

    assert "ActionFailed" in reasons(result) and TRAFFIC_DRIFT in reasons(result)
    assert world.status().phase == Phase.PROGRESSING, "saved as the pass saw it, not left Healthy"
    assert "traffic routing drifted" in world.status().message
    ready = world.status().condition("Ready")
    assert ready is not None and ready.status == "False", "kstatus' Ready (Flux, kubectl wait) is not left True"
    world.run()
    assert world.status().phase == Phase.HEALTHY, "the next pass repairs it"
    ready = world.status().condition("Ready")
    assert ready is not None and ready.status == "True"
