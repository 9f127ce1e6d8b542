"""The mode registry is the wiring: what admission lets through is what each mode's composition root builds."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from headway.bootstrap import embedded, kubernetes
from headway.bootstrap.__main__ import main as daemon_main
from headway.cli.main import main as cli
from headway.engine.admission import Mode, check
from headway.engine.modes import EMBEDDED, KUBERNETES, MODES, PROXY_PLUGIN, RouterEntry, RouterUnavailableError
from headway.engine.reconcile import ROUTER_UNREADABLE, run_pass
from headway.kube.client import BlockingKube, KubeClient
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.base import TrafficRouter
from headway.routers.composite import CompositeRouter
from headway.routers.gatewayapi import GatewayApiRouter
from headway.routers.istio import IstioRouter
from headway.routers.nginx import NginxRouter
from headway.routers.proxy import ProxyRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.kubernetes.analysis import cluster_providers
from headway.runtimes.kubernetes.controller import ControllerConfig
from headway.sim.runs import ScriptedRuns
from headway.spec.load import Severity, load_document
from headway.spec.rollout import Rollout
from headway.spec.status import Phase
from headway.stores.memory import MemoryStore
from headway.stores.sqlite import SqliteStore
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
        assert adapter.__module__ == KUBERNETES.routers[name].adapter, "the module loaded at start is the one built"


def test_every_router_the_registry_lists_for_kubernetes_finds_its_configuration_where_admission_found_it() -> None:
    # Admitted under a name, the adapter must read its config under that name too: one that looks elsewhere
    # fails every pass ("required") on a Rollout admission let through.
    for name, (routing, _) in CONFIG.items():
        module = importlib.import_module(KUBERNETES.routers[name].adapter)
        module.target_of(_routed(routing))  # raises PermanentError naming the field it did not find


def test_the_gateway_api_router_is_named_as_argo_names_its_plugin() -> None:
    model = _routed({"plugins": {"gatewayAPI": {"httpRoute": "web", "namespace": "d"}}})

    found = [(f.path, f.message) for f in check(model, Mode.KUBERNETES) if f.severity is Severity.ERROR]

    assert len(found) == 1, found
    assert found[0][0] == "spec.strategy.canary.trafficRouting.plugins[gatewayAPI]"
    assert "plugins[argoproj-labs/gatewayAPI]" in found[0][1]


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
    assert ProxyRouter.__module__ == EMBEDDED.routers[name].adapter
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


# --- a router the registry lists but that cannot be built: refused at start, an error on the Rollout -----------


def _unimportable(_kube: BlockingKube) -> TrafficRouter:
    raise ModuleNotFoundError("No module named 'headway_missing_mesh_client'")


def test_a_listed_router_whose_adapter_cannot_be_imported_stops_the_controller_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ability = KUBERNETES.routers["smi"].ability
    monkeypatch.setitem(KUBERNETES.routers, "smi", RouterEntry(ability, _unimportable, "headway.routers.no_such"))

    result = CliRunner().invoke(
        cli, ["controller", "--server", "http://127.0.0.1:9", "--no-leader-election", "--metrics-port", "0"]
    )

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), "a message, not a traceback"
    assert "the controller cannot start" in result.output
    assert "trafficRouting.smi" in result.output
    assert "headway.routers.no_such" in result.output
    with pytest.raises(RouterUnavailableError, match=r"trafficRouting\.smi"):
        kubernetes.build_controller(ControllerConfig(server="http://127.0.0.1:9"))


def test_a_router_that_cannot_be_built_in_a_pass_holds_the_rollout_with_the_field_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ability = KUBERNETES.routers["istio"].ability
    monkeypatch.setitem(KUBERNETES.routers, "istio", RouterEntry(ability, _unimportable, "headway.routers.istio"))
    rollout = _routed(CONFIG["istio"][0])
    router = kubernetes.router_for(rollout, _kube())  # no ImportError out of the engine factory
    assert router is not None
    store = MemoryStore()
    result = run_pass(
        rollout, now=EPOCH, platform=FakePlatform(), router=router, runs=ScriptedRuns(), store=store, key="d/web"
    )

    unreadable = [event for event in result.warnings if event.reason == ROUTER_UNREADABLE]
    assert unreadable, result.warnings
    assert "spec.strategy.canary.trafficRouting.istio" in unreadable[0].message
    assert "headway_missing_mesh_client" in unreadable[0].message
    assert result.decision.status.phase is not Phase.HEALTHY
    with pytest.raises(RouterUnavailableError, match="istio router"):
        router.set_weight(rollout, 10, "new", "old")


def test_the_embedded_daemon_refuses_to_start_without_its_router_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ability = EMBEDDED.routers[PROXY_PLUGIN].ability
    monkeypatch.setitem(EMBEDDED.routers, PROXY_PLUGIN, RouterEntry(ability, _unimportable, "headway.routers.proxy"))

    code = daemon_main(["--state-dir", str(tmp_path / "state")])

    assert code == 2  # a refused start, not a traceback
    error = capsys.readouterr().err
    assert f"trafficRouting.plugins[{PROXY_PLUGIN}]" in error
    assert "headway_missing_mesh_client" in error
    SqliteStore(tmp_path / "state").close()  # the failed start released the directory's lock


def test_the_embedded_daemon_refuses_to_start_on_a_listed_provider_it_cannot_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        embedded, "REGISTRY", dataclasses.replace(EMBEDDED, providers=EMBEDDED.providers | {"wavefront"})
    )

    code = daemon_main(["--state-dir", str(tmp_path / "state")])

    assert code == 2  # a refused start naming the provider, not a traceback
    assert "'wavefront' metric provider" in capsys.readouterr().err
    SqliteStore(tmp_path / "state").close()  # the failed start released the directory's lock
