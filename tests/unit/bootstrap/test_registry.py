"""The mode registry is the wiring: what admission lets through is what each mode's composition root builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headway.bootstrap import embedded, kubernetes
from headway.engine.admission import Mode, check
from headway.engine.modes import EMBEDDED, KUBERNETES, MODES
from headway.kube.client import BlockingKube, KubeClient
from headway.routers.composite import CompositeRouter
from headway.routers.gatewayapi import GatewayApiRouter
from headway.routers.istio import IstioRouter
from headway.routers.nginx import NginxRouter
from headway.routers.proxy import ProxyRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.kubernetes.analysis import cluster_providers
from headway.spec.load import Severity, load_document
from headway.spec.rollout import Rollout
from tests.unit.spec.manifests import canary, rollout

SERVICES = {"canaryService": "web-canary", "stableService": "web-stable"}
CONFIG: dict[str, tuple[dict[str, Any], type]] = {  # per router name the Kubernetes mode lists: a valid
    # trafficRouting block, and the adapter that must drive it
    "istio": ({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}, IstioRouter),
    "nginx": ({"nginx": {"stableIngress": "web"}}, NginxRouter),
    "smi": ({"smi": {"rootService": "web"}}, SmiRouter),
    "argoproj-labs/gatewayAPI": (
        {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web", "namespace": "d"}}},
        GatewayApiRouter,
    ),
    "gatewayAPI": ({"plugins": {"gatewayAPI": {"httpRoute": "web", "namespace": "d"}}}, GatewayApiRouter),
}


def _routed(routing: dict[str, Any]) -> Rollout:
    document = load_document(canary(**SERVICES, trafficRouting=routing, steps=[{"setWeight": 20}]))
    assert isinstance(document.model, Rollout), document.problems
    return document.model


def _kube() -> BlockingKube:
    return BlockingKube.__new__(BlockingKube)  # never called: building adapters makes no requests


def test_every_router_the_registry_lists_for_kubernetes_is_admitted_and_built() -> None:
    assert set(CONFIG) == set(KUBERNETES.routers), "a router added to the registry needs a line in CONFIG"
    for name, (routing, adapter) in CONFIG.items():
        model = _routed(routing)
        assert [f for f in check(model, Mode.KUBERNETES) if f.severity is Severity.ERROR] == [], name
        assert type(kubernetes.router_for(model, _kube())) is adapter, name


def test_several_routers_are_all_built_as_one() -> None:
    router = kubernetes.router_for(_routed({**CONFIG["istio"][0], **CONFIG["smi"][0]}), _kube())

    assert isinstance(router, CompositeRouter)
    assert [name for name, _ in router.routers] == ["istio", "smi"]


def test_a_rollout_without_traffic_routing_has_no_router_in_a_cluster() -> None:
    document = load_document(rollout())
    assert isinstance(document.model, Rollout)

    assert kubernetes.router_for(document.model, _kube()) is None


def test_the_embedded_router_is_the_proxy_router_on_the_mode_proxies(tmp_path: Path) -> None:
    proxies = Proxies(tmp_path)
    (name,) = EMBEDDED.routers
    router = EMBEDDED.router(name, proxies)

    assert isinstance(router, ProxyRouter)
    assert router.instance_of == proxies.instance  # so a restarted proxy is told from an edited one


def test_each_mode_runs_exactly_the_providers_its_registry_lists(tmp_path: Path) -> None:
    built = embedded.providers(Proxies(tmp_path), lambda _run: None)
    cluster = cluster_providers(KubeClient.for_server("http://127.0.0.1:9"), "headway.dev")

    assert set(built) == EMBEDDED.providers
    assert set(cluster) == KUBERNETES.providers


@pytest.mark.parametrize("mode", list(Mode))
def test_both_modes_call_gates_and_admit_webhooks(mode: Mode) -> None:
    manifest = rollout()
    manifest["spec"]["webhooks"] = [{"name": "ok", "type": "confirm-promotion", "url": "http://127.0.0.1:1/"}]
    document = load_document(manifest)
    assert document.model is not None

    assert MODES[mode].gates is not None
    assert check(document.model, mode) == []


def test_both_modes_deliver_notifications_from_their_own_config_not_argos_annotations() -> None:
    manifest = rollout()
    manifest["metadata"]["annotations"] = {"notifications.argoproj.io/subscribe.on-rollout-completed.slack": "ops"}
    document = load_document(manifest)
    assert document.model is not None

    embedded_findings = check(document.model, Mode.EMBEDDED)
    kubernetes_findings = check(document.model, Mode.KUBERNETES)

    assert EMBEDDED.notifications is not None and KUBERNETES.notifications is not None
    path = "metadata.annotations[notifications.argoproj.io/subscribe.on-rollout-completed.slack]"
    assert [(f.path, f.severity) for f in kubernetes_findings] == [(path, Severity.WARNING)]
    assert "headway controller --notify" in kubernetes_findings[0].message
    assert [(f.path, f.severity) for f in embedded_findings] == [(path, Severity.WARNING)]
    assert "notify.yaml" in embedded_findings[0].message
