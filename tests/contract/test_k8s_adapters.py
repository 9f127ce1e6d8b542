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
from headway.core.errors import TemporaryError
from headway.core.observation import RouterState
from headway.platforms.kubernetes import KubernetesPlatform
from headway.routers.gatewayapi import ORIGINAL_ANNOTATION, PLUGIN, GatewayApiRouter, set_weights, target_of
from headway.routers.istio import VIRTUAL_SERVICES, IstioRouter
from headway.runtimes.kubernetes.client import HTTP_ROUTES, REPLICA_SETS, SERVICES, ApiConflictError, rollouts
from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError
from headway.stores.k8s_status import KubernetesStatusStore
from tests.contract import test_platform, test_router, test_store
from tests.e2e.kubernetes.emulator import ApiServer
from tests.scenarios.harness import canary, make_rollout


def _import_contract(module: ModuleType, fixture: str) -> None:
    """Bring every test of ``module`` that takes ``fixture`` into this module, so pytest runs it here too."""
    for name, function in vars(module).items():
        if name.startswith("test_") and fixture in inspect.signature(function).parameters:
            globals()[f"{name}"] = function


_import_contract(test_platform, "platform")
_import_contract(test_store, "store")
_import_contract(test_router, "router")
# test_rollouts_do_not_share_weights builds Istio rollouts; it is restated below (the later def wins).


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


def gateway_rollout(name: str = "web") -> Rollout:
    """A canary routed through the HTTPRoute ``<name>`` between ``<name>-stable`` and ``<name>-canary``."""
    strategy = {
        "canaryService": f"{name}-canary",
        "stableService": f"{name}-stable",
        "trafficRouting": {"plugins": {PLUGIN: {"httpRoute": name}}},
        "steps": [{"setWeight": 25}, {"pause": {}}],
    }
    return make_rollout({"canary": strategy}, name=name)


def http_route(name: str = "web") -> dict[str, Any]:
    backends = [
        {"name": f"{name}-stable", "port": 80, "weight": 100},
        {"name": f"{name}-canary", "port": 80, "weight": 0},
    ]
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}],
        },
    }


def istio_rollout(name: str = "web") -> Rollout:
    """A canary routed through the VirtualService ``<name>`` (HTTP route ``primary``), host-level splitting."""
    strategy = {
        "canaryService": f"{name}-canary",
        "stableService": f"{name}-stable",
        "trafficRouting": {"istio": {"virtualService": {"name": name, "routes": ["primary"]}}},
        "steps": [{"setWeight": 25}, {"pause": {}}],
    }
    return make_rollout({"canary": strategy}, name=name)


def virtual_service(name: str = "web") -> dict[str, Any]:
    destinations = [
        {"destination": {"host": f"{name}-stable", "port": {"number": 80}}, "weight": 100},
        {"destination": {"host": f"{name}-canary", "port": {"number": 80}}, "weight": 0},
    ]
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [name], "http": [{"name": "primary", "route": destinations}]},
    }


ROUTED = {GatewayApiRouter: gateway_rollout, IstioRouter: istio_rollout}


def routed(router: object, name: str = "web") -> Rollout:
    """A rollout configured for ``router``'s kind of routing object."""
    return ROUTED[type(router)](name)


@pytest.fixture
def rollout(request: pytest.FixtureRequest) -> Rollout:
    if "router" in request.fixturenames:
        return routed(request.getfixturevalue("router"))
    return gateway_rollout()


@pytest.fixture
def store(api: ApiServer) -> KubernetesStatusStore:
    for name in ("web", "api"):
        api.kube.create(rollouts(), {"metadata": {"name": name, "namespace": "default"}, "spec": {}})
    return KubernetesStatusStore(api.kube)


@pytest.fixture
def gateway_router(api: ApiServer) -> GatewayApiRouter:
    for name in ("web", "api"):
        api.kube.create(HTTP_ROUTES, http_route(name))
    return GatewayApiRouter(api.kube)


@pytest.fixture(params=["gatewayapi", "istio"])
def router(request: pytest.FixtureRequest, api: ApiServer) -> GatewayApiRouter | IstioRouter:
    if request.param == "istio":
        api.emulator.declare("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
        for name in ("web", "api"):
            api.kube.create(VIRTUAL_SERVICES, virtual_service(name))
        return IstioRouter(api.kube)
    for name in ("web", "api"):
        api.kube.create(HTTP_ROUTES, http_route(name))
    return GatewayApiRouter(api.kube)


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


# --- what only the Gateway API router shows --------------------------------------------------------------------


def test_rollouts_do_not_share_weights(router: GatewayApiRouter | IstioRouter) -> None:
    router.set_weight(routed(router, "web"), 30, "new", "old")

    assert router.read_weight(routed(router, "api")).canary_weight == 0


def test_istio_restore_puts_the_users_virtual_service_back(api: ApiServer) -> None:
    api.emulator.declare("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    api.kube.create(VIRTUAL_SERVICES, virtual_service())
    router, rollout = IstioRouter(api.kube), istio_rollout()
    before = api.kube.get(VIRTUAL_SERVICES, "web", "default")
    router.set_weight(rollout, 40, "new", "old")
    router.set_mirror_route(rollout, "shadow", test_router.MIRROR, 20)

    router.restore(rollout)

    after = api.kube.get(VIRTUAL_SERVICES, "web", "default")
    assert before is not None and after is not None
    assert after["spec"] == before["spec"]


def test_restore_puts_the_users_route_back_exactly(gateway_router: GatewayApiRouter, api: ApiServer) -> None:
    before = api.kube.get(HTTP_ROUTES, "web", "default")
    rollout = gateway_rollout()
    gateway_router.set_weight(rollout, 40, "new", "old")
    gateway_router.set_header_route(rollout, "testers", test_router.HEADER)

    gateway_router.restore(rollout)

    after = api.kube.get(HTTP_ROUTES, "web", "default")
    assert before is not None and after is not None
    assert after["spec"] == before["spec"]
    assert ORIGINAL_ANNOTATION not in (after["metadata"].get("annotations") or {})


def test_a_route_refused_by_its_gateway_gets_no_canary_traffic(
    gateway_router: GatewayApiRouter, api: ApiServer
) -> None:
    refused = {"conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}
    api.kube.patch(HTTP_ROUTES, "web", "default", {"status": {"parents": [refused]}}, status=True)

    with pytest.raises(TemporaryError, match="NotAllowedByListeners"):
        gateway_router.set_weight(gateway_rollout(), 20, "new", "old")
    assert gateway_router.read_weight(gateway_rollout()).canary_weight == 0


def test_an_accepted_route_reads_back_verified(gateway_router: GatewayApiRouter, api: ApiServer) -> None:
    gateway_router.set_weight(gateway_rollout(), 20, "new", "old")
    route = api.kube.get(HTTP_ROUTES, "web", "default")
    assert route is not None
    generation = route["metadata"]["generation"]
    conditions = [
        {"type": kind, "status": "True", "reason": kind, "observedGeneration": generation}
        for kind in ("Accepted", "ResolvedRefs")
    ]
    api.kube.patch(HTTP_ROUTES, "web", "default", {"status": {"parents": [{"conditions": conditions}]}}, status=True)

    assert gateway_router.read_weight(gateway_rollout()) == RouterState(canary_weight=20, verified=True)


def test_a_concurrent_edit_of_the_route_is_a_conflict_not_clobbered(api: ApiServer) -> None:
    router, rollout = GatewayApiRouter(api.kube), gateway_rollout()
    api.kube.create(HTTP_ROUTES, http_route())
    stale = api.kube.get(HTTP_ROUTES, "web", "default")
    assert stale is not None
    api.kube.patch(HTTP_ROUTES, "web", "default", {"metadata": {"labels": {"edited": "by-user"}}})

    with pytest.raises(ApiConflictError):
        router._write(target_of(rollout), stale, set_weights(stale["spec"]["rules"], target_of(rollout), 50))
    router.set_weight(rollout, 50, "new", "old")  # the next pass re-reads and succeeds

    route = api.kube.get(HTTP_ROUTES, "web", "default")
    assert route is not None
    assert route["metadata"]["labels"] == {"edited": "by-user"}
    assert router.read_weight(rollout).canary_weight == 50
