"""Applying a decision: each action reaches its adapter, in order, and the first failure stops the rest."""

from __future__ import annotations

import pytest

from headway.core import actions as a
from headway.core.errors import PermanentError, TemporaryError
from headway.engine.apply import apply_actions
from headway.platforms.fake import FakePlatform
from headway.routers.fake import FakeRouter
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import HeaderRoutingMatch, RolloutAnalysis, RolloutExperimentStep, RouteMatch, StringMatch
from tests.scenarios.harness import canary

ROLLOUT = canary(routed=True)
ANALYSIS = RolloutAnalysis.model_validate({"templates": [{"templateName": "error-rate"}]})
EXPERIMENT = RolloutExperimentStep.model_validate({"templates": [{"name": "baseline", "specRef": "stable"}]})
HEADER = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes")),)
MIRROR = (RouteMatch(path=StringMatch(prefix="/api")),)


class World:
    def __init__(self) -> None:
        self.platform = FakePlatform()
        self.router = FakeRouter()
        self.runs = ScriptedRuns()

    def apply(self, *actions: a.Action, routed: bool = True) -> object:
        return apply_actions(
            ROLLOUT, actions, platform=self.platform, router=self.router if routed else None, runs=self.runs
        )


PLATFORM_ACTIONS: list[tuple[a.Action, str]] = [
    (a.ScaleRevision(hash="abc", replicas=2), "scale_revision"),
    (a.DeleteRevision(hash="abc"), "delete_revision"),
    (a.RestartRevision(hash="abc"), "restart_revision"),
    (a.SwitchService(role=a.ServiceRole.STABLE, service="web-stable", hash="abc"), "switch_service"),
]
ROUTER_ACTIONS: list[tuple[a.Action, str]] = [
    (a.SetWeight(canary_weight=20, canary_hash="new", stable_hash="abc"), "set_weight"),
    (a.SetHeaderRoute(name="testers", match=HEADER), "set_header_route"),
    (a.SetMirrorRoute(name="mirror", match=MIRROR, percentage=20), "set_mirror_route"),
    (a.RemoveManagedRoutes(), "remove_managed_routes"),
]


@pytest.mark.parametrize(("action", "method"), PLATFORM_ACTIONS, ids=lambda x: type(x).__name__)
def test_revision_and_service_actions_reach_the_platform(action: a.Action, method: str) -> None:
    world = World()

    applied = world.apply(a.CreateRevision(hash="abc", number=1, replicas=1), action)

    assert world.platform.methods_called() == ["create_revision", method]
    assert getattr(applied, "ok", False)


@pytest.mark.parametrize(("action", "method"), ROUTER_ACTIONS, ids=lambda x: type(x).__name__)
def test_routing_actions_reach_the_router(action: a.Action, method: str) -> None:
    world = World()

    world.apply(action)

    assert [call.method for call in world.router.calls] == [method]


def test_run_actions_reach_the_run_backend() -> None:
    world = World()
    run = a.StartAnalysisRun(name="web-1", kind=a.RunKind.STEP, analysis=ANALYSIS, hash="new", stable_hash="old")
    experiment = a.StartExperiment(name="web-exp", experiment=EXPERIMENT, canary_hash="new", stable_hash="old")

    world.apply(run, experiment, a.TerminateAnalysisRun(name="web-1"), a.TerminateExperiment(name="web-exp"))

    analysis, experiments = world.runs.observe(ROLLOUT)
    assert analysis["web-1"].phase.completed
    assert experiments["web-exp"].phase.completed


def test_actions_run_in_the_order_given() -> None:
    world = World()

    world.apply(
        a.CreateRevision(hash="new", number=2, replicas=1),
        a.SetWeight(canary_weight=10, canary_hash="new", stable_hash="old"),
        a.ScaleRevision(hash="new", replicas=3),
    )

    assert world.platform.methods_called() == ["create_revision", "scale_revision"]
    assert world.router.route(ROLLOUT).canary_weight == 10


def test_the_first_failure_stops_the_rest_and_is_reported() -> None:
    world = World()
    world.router.fail_next("set_weight", TemporaryError("router busy", delay=7))
    create = a.CreateRevision(hash="new", number=2, replicas=1)
    weight = a.SetWeight(canary_weight=10, canary_hash="new", stable_hash="old")

    applied = apply_actions(
        ROLLOUT,
        [create, weight, a.ScaleRevision(hash="new", replicas=3)],
        platform=world.platform,
        router=world.router,
        runs=world.runs,
    )

    assert applied.done == (create,)
    assert applied.failure is not None
    assert applied.failure.action == weight
    assert applied.failure.retry_after == 7
    assert "router busy" in applied.failure.describe()
    assert world.platform.methods_called() == ["create_revision"]


def test_a_permanent_failure_has_no_retry_delay() -> None:
    world = World()
    world.router.fail_next("remove_managed_routes", PermanentError("forbidden"))

    applied = apply_actions(
        ROLLOUT, [a.RemoveManagedRoutes()], platform=world.platform, router=world.router, runs=world.runs
    )

    assert applied.failure is not None
    assert not applied.failure.temporary
    assert applied.failure.retry_after is None


@pytest.mark.parametrize(("action", "_method"), ROUTER_ACTIONS, ids=lambda x: type(x).__name__)
def test_routing_without_a_router_fails_loudly(action: a.Action, _method: str) -> None:
    world = World()

    applied = apply_actions(ROLLOUT, [action], platform=world.platform, router=None, runs=world.runs)

    assert applied.failure is not None
    assert isinstance(applied.failure.error, PermanentError)
    assert "needs a traffic router" in str(applied.failure.error)


def test_unexpected_exceptions_are_bugs_and_propagate() -> None:
    world = World()

    with pytest.raises(ValueError, match="does not exist"):
        world.apply(a.ScaleRevision(hash="ghost", replicas=1))
