"""The Platform contract: read-back and idempotency, for every platform (`tests.contract.adapters.PLATFORMS`).

The fake, the embedded mode's local processes and the Kubernetes ReplicaSets (on the API server emulator) pass
the same assertions. The sections after the contract pin what only one adapter shows: what the Kubernetes
platform writes, and the fake's virtual time the simulator relies on (startup delays, crashloops,
minReadySeconds, unready pods removed first).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from headway.core.actions import ServiceRole
from headway.kube.client import REPLICA_SETS, SERVICES
from headway.platforms.base import Platform
from headway.platforms.fake import EPOCH, FakePlatform
from headway.platforms.kubernetes import KubernetesPlatform
from headway.spec.rollout import Rollout
from tests.contract import adapters
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import canary


@pytest.fixture(params=adapters.params(adapters.PLATFORMS))
def platform(request: pytest.FixtureRequest) -> Platform:
    entry: adapters.Adapter[Platform] = request.param
    return entry.build(request)


@pytest.fixture
def rollout() -> Rollout:
    return canary()


def test_a_created_revision_reads_back(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 3)

    revision = platform.revisions(rollout)["abc"]

    assert (revision.hash, revision.number, revision.replicas) == ("abc", 1, 3)


def test_creating_twice_is_creating_once(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 3)
    platform.create_revision(rollout, "abc", 1, 3)

    assert list(platform.revisions(rollout)) == ["abc"]
    assert platform.revisions(rollout)["abc"].replicas == 3


def test_creating_an_existing_revision_scales_it(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 3)
    platform.create_revision(rollout, "abc", 1, 1)

    assert platform.revisions(rollout)["abc"].replicas == 1


@pytest.mark.parametrize("replicas", [0, 1, 5], ids=["to-zero", "down", "up"])
def test_scaling_reads_back_and_is_idempotent(platform: Platform, rollout: Rollout, replicas: int) -> None:
    platform.create_revision(rollout, "abc", 1, 3)

    platform.scale_revision(rollout, "abc", replicas)
    platform.scale_revision(rollout, "abc", replicas)

    assert platform.revisions(rollout)["abc"].replicas == replicas


def test_deleting_is_idempotent(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 0)

    platform.delete_revision(rollout, "abc")
    platform.delete_revision(rollout, "abc")

    assert "abc" not in platform.revisions(rollout)


def test_deleting_an_unknown_revision_is_a_no_op(platform: Platform, rollout: Rollout) -> None:
    platform.delete_revision(rollout, "never-created")

    assert dict(platform.revisions(rollout)) == {}


def test_restarting_keeps_the_replica_count(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 3)

    platform.restart_revision(rollout, "abc")

    assert platform.revisions(rollout)["abc"].replicas == 3


def test_switching_a_service_twice_is_switching_once(platform: Platform, rollout: Rollout) -> None:
    platform.create_revision(rollout, "abc", 1, 1)

    platform.switch_service(rollout, ServiceRole.STABLE, "web-stable", "abc")
    platform.switch_service(rollout, ServiceRole.STABLE, "web-stable", "abc")

    assert "abc" in platform.revisions(rollout)


def test_rollouts_do_not_see_each_others_revisions(platform: Platform) -> None:
    web, api = canary(name="web"), canary(name="api")

    platform.create_revision(web, "abc", 1, 2)

    assert dict(platform.revisions(api)) == {}
    assert platform.revisions(web)["abc"].replicas == 2


# --- what only the Kubernetes platform shows -----------------------------------------------------------------


def _replica_sets(api: ApiServer) -> list[dict[str, Any]]:
    return list(api.objects("replicasets"))


def test_a_revision_is_a_labelled_owned_replica_set(api: ApiServer) -> None:
    rollout = canary().model_copy(update={"metadata": canary().metadata.model_copy(update={"uid": "u-1"})})

    KubernetesPlatform(api.kube).create_revision(rollout, "abc", 4, 2)

    (replica_set,) = _replica_sets(api)
    meta = replica_set["metadata"]
    assert meta["name"] == "web-abc"
    assert meta["labels"]["rollouts-pod-template-hash"] == "abc"
    assert meta["annotations"]["rollout.argoproj.io/revision"] == "4"
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert replica_set["spec"]["selector"]["matchLabels"]["rollouts-pod-template-hash"] == "abc"
    assert replica_set["spec"]["template"]["metadata"]["labels"]["rollouts-pod-template-hash"] == "abc"


def test_readiness_is_read_from_the_replica_set_status(api: ApiServer) -> None:
    platform, rollout = KubernetesPlatform(api.kube), canary()
    platform.create_revision(rollout, "abc", 1, 3)

    api.kube.patch(
        REPLICA_SETS, "web-abc", "default", {"status": {"readyReplicas": 2, "availableReplicas": 1}}, status=True
    )

    revision = platform.revisions(rollout)["abc"]
    assert (revision.replicas, revision.ready, revision.available) == (3, 2, 1)


def test_switching_a_service_pins_its_selector_and_keeps_the_users(api: ApiServer) -> None:
    api.kube.create(
        SERVICES, {"metadata": {"name": "web-stable", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}
    )

    KubernetesPlatform(api.kube).switch_service(canary(), ServiceRole.STABLE, "web-stable", "abc")

    service = api.kube.get(SERVICES, "web-stable", "default")
    assert service is not None
    assert service["spec"]["selector"] == {"app": "web", "rollouts-pod-template-hash": "abc"}


# --- the fake's virtual time ---------------------------------------------------------------------------------


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_fake_pods_become_ready_after_their_startup_time() -> None:
    platform, rollout = FakePlatform(startup_seconds=30), canary()
    platform.create_revision(rollout, "abc", 1, 2)

    platform.advance(EPOCH + seconds(29))
    assert platform.revisions(rollout)["abc"].ready == 0
    assert platform.next_change_at() == EPOCH + seconds(30)

    platform.advance(EPOCH + seconds(30))
    assert platform.revisions(rollout)["abc"].ready == 2
    assert platform.next_change_at() is None


def test_fake_pods_are_available_min_ready_seconds_after_ready() -> None:
    platform, rollout = FakePlatform(startup_seconds=10), canary(minReadySeconds=20)
    platform.create_revision(rollout, "abc", 1, 1)

    platform.advance(EPOCH + seconds(10))
    assert (platform.revisions(rollout)["abc"].ready, platform.revisions(rollout)["abc"].available) == (1, 0)

    platform.advance(EPOCH + seconds(30))
    assert platform.revisions(rollout)["abc"].available == 1


def test_fake_crashlooping_pods_never_become_ready() -> None:
    platform, rollout = FakePlatform(startup_seconds=5), canary()
    platform.startup_for_hash("bad", None)
    platform.create_revision(rollout, "bad", 1, 2)

    platform.advance(EPOCH + seconds(10_000))

    assert platform.revisions(rollout)["bad"].ready == 0
    assert platform.next_change_at() is None


def test_fake_startup_rules_match_on_the_template() -> None:
    platform, rollout = FakePlatform(startup_seconds=5), canary(image="example/web:2.0.0")
    platform.startup_when(lambda _hash, template: "2.0.0" in str(template), 60)
    platform.create_revision(rollout, "new", 1, 1)

    platform.advance(EPOCH + seconds(30))

    assert platform.revisions(rollout)["new"].ready == 0


def test_fake_scale_down_is_immediate_and_removes_unready_pods_first() -> None:
    platform, rollout = FakePlatform(startup_seconds=10), canary()
    platform.create_revision(rollout, "abc", 1, 2)
    platform.advance(EPOCH + seconds(10))
    platform.scale_revision(rollout, "abc", 4)  # two more, not ready yet

    platform.scale_revision(rollout, "abc", 2)

    revision = platform.revisions(rollout)["abc"]
    assert (revision.replicas, revision.ready) == (2, 2)


def test_fake_restart_takes_pods_down_one_at_a_time() -> None:
    platform, rollout = FakePlatform(startup_seconds=10), canary()
    platform.create_revision(rollout, "abc", 1, 2)
    platform.advance(EPOCH + seconds(10))

    platform.restart_revision(rollout, "abc")
    assert platform.revisions(rollout)["abc"].ready == 1
    platform.advance(EPOCH + seconds(25))
    assert platform.revisions(rollout)["abc"].ready == 1
    platform.advance(EPOCH + seconds(30))
    assert platform.revisions(rollout)["abc"].ready == 2


def test_fake_logs_calls_and_services() -> None:
    platform, rollout = FakePlatform(), canary()
    platform.create_revision(rollout, "abc", 1, 1)
    platform.switch_service(rollout, ServiceRole.ACTIVE, "web-active", "abc")

    assert platform.methods_called() == ["create_revision", "switch_service"]
    assert platform.services(rollout) == {"web-active": "abc"}


def test_fake_time_only_moves_forward_and_is_aware() -> None:
    platform = FakePlatform()
    platform.advance(EPOCH + seconds(5))

    with pytest.raises(ValueError, match="forward"):
        platform.advance(EPOCH)
    with pytest.raises(ValueError, match="timezone"):
        platform.advance((EPOCH + seconds(10)).replace(tzinfo=None))


def test_fake_refuses_to_scale_a_revision_it_never_had() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FakePlatform().scale_revision(canary(), "ghost", 1)
