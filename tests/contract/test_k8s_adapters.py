"""The shared Platform, StatusStore and TrafficRouter contracts, run against the Kubernetes adapters.

The contract tests are imported from their suites (every test that takes the adapter fixture), and the fixtures
here build the Kubernetes adapter on a fresh fidelity emulator served over real HTTP on 127.0.0.1, so the same
assertions run against ReplicaSets, the /status subresource and HTTPRoutes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from headway.core.actions import ServiceRole
from headway.platforms.kubernetes import KubernetesPlatform
from headway.runtimes.kubernetes.client import REPLICA_SETS, SERVICES, rollouts
from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError
from headway.stores.k8s_status import KubernetesStatusStore
from tests.contract import test_platform, test_store
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import canary


def _import_contract(module: ModuleType, fixture: str) -> None:
    """Bring every test of ``module`` that takes ``fixture`` into this module, so pytest runs it here too."""
    for name, function in vars(module).items():
        if name.startswith("test_") and fixture in inspect.signature(function).parameters:
            globals()[f"{name}"] = function


_import_contract(test_platform, "platform")
_import_contract(test_store, "store")


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        server.emulator.declare("headway.dev", "v1alpha1", "rollouts", "Rollout")
        yield server


@pytest.fixture
def platform(api: ApiServer) -> KubernetesPlatform:
    for name in ("web-stable", "web-canary", "web-active", "web-preview"):
        api.kube.create(SERVICES, {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {}}})
    return KubernetesPlatform(api.kube)


@pytest.fixture
def rollout() -> Rollout:
    return canary()


@pytest.fixture
def store(api: ApiServer) -> KubernetesStatusStore:
    for name in ("web", "api"):
        api.kube.create(rollouts(), {"metadata": {"name": name, "namespace": "default"}, "spec": {}})
    return KubernetesStatusStore(api.kube)


def _replica_sets(api: ApiServer) -> list[dict[str, Any]]:
    return list(api.objects("replicasets"))


# --- what only the Kubernetes platform shows -----------------------------------------------------------------


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


def test_a_status_written_meanwhile_is_a_conflict_not_an_overwrite(
    store: KubernetesStatusStore, api: ApiServer
) -> None:
    read = store.save("default/web", RolloutStatus(message="one"), NO_VERSION)
    api.kube.patch(rollouts(), "web", "default", {"spec": {"paused": True}})  # a user's edit moves the version

    with pytest.raises(ConflictError):
        store.save("default/web", RolloutStatus(message="stale"), read)
    assert store.load("default/web")[0].message == "one"
