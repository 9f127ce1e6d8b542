"""The traffic model: how requests split by wiring, and how failures are counted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from headway.core.actions import ServiceRole
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.fake import FakeRouter
from headway.sim.traffic import NOWHERE, Profile, TrafficModel, split
from headway.spec.rollout import Rollout
from tests.scenarios.harness import blue_green, canary


def ready_platform(rollout_replicas: dict[str, int], *, rollout: Rollout) -> FakePlatform:
    platform = FakePlatform(startup_seconds=0)
    for number, (pod_hash, replicas) in enumerate(rollout_replicas.items(), start=1):
        platform.create_revision(rollout, pod_hash, number, replicas)
    return platform


def test_a_basic_canary_gets_its_share_of_ready_pods() -> None:
    rollout = canary()
    platform = ready_platform({"old": 3, "new": 1}, rollout=rollout)

    assert split(rollout, platform, None) == {"old": 0.75, "new": 0.25}


def test_pods_that_are_not_ready_take_no_traffic() -> None:
    rollout = canary()
    platform = ready_platform({"old": 3}, rollout=rollout)
    platform.startup_for_hash("new", None)
    platform.create_revision(rollout, "new", 2, 1)

    assert split(rollout, platform, None) == {"old": 1.0}


def test_no_ready_pod_anywhere_sends_requests_nowhere() -> None:
    rollout = canary()
    platform = FakePlatform(startup_seconds=None)
    platform.create_revision(rollout, "old", 1, 3)

    assert split(rollout, platform, None) == {NOWHERE: 1.0}


@pytest.mark.parametrize(
    ("weight", "expected"), [(0, {"old": 1.0}), (30, {"new": 0.3, "old": 0.7}), (100, {"new": 1.0})]
)
def test_a_routed_canary_gets_the_routers_effective_weight(weight: int, expected: dict[str, float]) -> None:
    rollout = canary(routed=True)
    platform = ready_platform({"old": 4, "new": 1}, rollout=rollout)
    router = FakeRouter()
    router.set_weight(rollout, weight, "new", "old")

    assert split(rollout, platform, router) == pytest.approx(expected)


def test_a_lagging_router_still_sends_the_old_weight() -> None:
    rollout = canary(routed=True)
    platform = ready_platform({"old": 4, "new": 1}, rollout=rollout)
    router = FakeRouter(lag_seconds=30)
    router.set_weight(rollout, 0, None, "old")
    router.advance(EPOCH + timedelta(seconds=30))

    router.set_weight(rollout, 50, "new", "old")

    assert split(rollout, platform, router) == {"old": 1.0}


def test_blue_green_sends_everything_to_the_active_service() -> None:
    rollout = blue_green()
    platform = ready_platform({"blue": 4, "green": 4}, rollout=rollout)
    platform.switch_service(rollout, ServiceRole.ACTIVE, "web-active", "green")

    assert split(rollout, platform, None) == {"green": 1.0}


def test_requests_fail_at_the_revisions_error_rate() -> None:
    profiles = {"old": Profile(error_rate=0.0, latency_ms=50), "new": Profile(error_rate=0.25, latency_ms=150)}
    model = TrafficModel(rps=100, profile=profiles.__getitem__, now=EPOCH)

    model.advance(EPOCH + timedelta(seconds=10), {"old": 0.8, "new": 0.2}, {"old": 4, "new": 1})

    assert model.total() == pytest.approx(1000)
    assert model.requests("new") == pytest.approx(200)
    assert model.failed() == pytest.approx(50)
    assert model.served["new"].mean_latency_ms == pytest.approx(150)


def test_requests_to_a_revision_without_ready_pods_all_fail() -> None:
    model = TrafficModel(rps=10, profile=lambda _: Profile(error_rate=0.0), now=EPOCH)

    model.advance(EPOCH + timedelta(seconds=10), {"new": 0.5, "old": 0.5}, {"old": 2, "new": 0})
    model.advance(EPOCH + timedelta(seconds=20), {NOWHERE: 1.0}, {})

    assert model.failed() == pytest.approx(50 + 100)


def test_traffic_time_only_moves_forward() -> None:
    model = TrafficModel(rps=10, profile=lambda _: Profile(), now=EPOCH + timedelta(seconds=5))

    with pytest.raises(ValueError, match="forward"):
        model.advance(EPOCH, {}, {})
