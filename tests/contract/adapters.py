"""Every adapter of every port, one line each: the contract suites run each of them, none is left out.

A suite's adapter fixture is parametrized over the list of its Protocol here (`ROUTERS`, `PLATFORMS`, `STORES`,
`RUN_BACKENDS`; the metric providers' list is `tests.contract.test_metric_providers.PROVIDERS`, whose entries
also carry their measuring harness). Adding an adapter means adding its line here: `test_adapters.py` fails
when a module under ``headway/routers``, ``providers``, ``platforms`` or ``stores`` implements an adapter no
list names. Each entry builds its adapter from the test's fixtures (the Kubernetes ones on the e2e suite's API
server emulator, the proxy and HAProxy routers on real processes); an entry that starts real processes is marked
``slow`` so the fast loop (``pytest -m "not slow"``) keeps to the in-process ones.

A router that cannot do something says so here (``header_routes=False``), and the suite then asserts it refuses
the request by name instead of skipping the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from _pytest.mark import ParameterSet

from headway.engine.analysis import AnalysisExecutor
from headway.engine.runs import RunBackend
from headway.kube.client import DEFAULT_GROUP, HTTP_ROUTES, SERVICES, analysis_templates, rollouts
from headway.platforms.base import Platform
from headway.platforms.fake import EPOCH, FakePlatform
from headway.platforms.kubernetes import KubernetesPlatform
from headway.platforms.local import LocalPlatform
from headway.providers.base import MetricProvider
from headway.providers.static import StaticProvider
from headway.routers.base import TrafficRouter
from headway.routers.composite import CompositeRouter
from headway.routers.fake import FakeRouter
from headway.routers.gatewayapi import PLUGIN, GatewayApiRouter
from headway.routers.haproxy import HAProxyRouter, HAProxyRuntime
from headway.routers.istio import VIRTUAL_SERVICES, IstioRouter
from headway.routers.nginx import INGRESSES, NginxRouter
from headway.routers.proxy import ProxyRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.kubernetes.analysis import RunMeasurer
from headway.runtimes.kubernetes.runs import KubernetesRunBackend
from headway.sim.analysis import SimAnalysis
from headway.sim.runs import ScriptedRuns
from headway.spec.analysis import AnalysisTemplate
from headway.spec.rollout import Rollout
from headway.stores.base import StatusStore
from headway.stores.k8s_status import KubernetesStatusStore
from headway.stores.memory import MemoryStore
from headway.stores.sqlite import SqliteStore
from tests.contract.conftest import APPS
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.proxy.processes import TOKEN, Running, call
from tests.scenarios.harness import canary, make_rollout

T = TypeVar("T")


@dataclass(frozen=True)
class Adapter(Generic[T]):
    """One adapter of a port: how a test gets a fresh one, and what it is."""

    name: str
    implementation: type
    """The adapter's class (its module is what `test_adapters.py` checks is listed)."""
    build: Callable[[pytest.FixtureRequest], T]
    real_process: bool = False
    """Starts a server or long-lived processes (a proxy, haproxy, replicas): marked ``slow``, out of the fast
    loop. Short commands a measurement runs (``sh -c``) do not count."""

    def param(self) -> ParameterSet:
        return pytest.param(self, id=self.name, marks=[pytest.mark.slow] if self.real_process else [])


def params(adapters: Sequence[Adapter[Any]]) -> list[ParameterSet]:
    """The fixture parameters of ``adapters``, each named after its adapter."""
    return [adapter.param() for adapter in adapters]


def kube(request: pytest.FixtureRequest) -> ApiServer:
    """The test's API server emulator (the e2e suite's ``api`` fixture: fresh per test)."""
    server: ApiServer = request.getfixturevalue("api")
    return server


# --- TrafficRouter --------------------------------------------------------------------------------------------


def _canary(name: str, routing: dict[str, Any]) -> Rollout:
    """A canary of ``name`` between ``<name>-stable`` and ``<name>-canary``, routed by ``routing``."""
    strategy = {
        "canaryService": f"{name}-canary",
        "stableService": f"{name}-stable",
        "trafficRouting": routing,
        "steps": [{"setWeight": 25}, {"pause": {}}],
    }
    return make_rollout({"canary": strategy}, name=name)


def routed(name: str) -> Rollout:
    """A routed canary for the routers that take their target from their own configuration, not the spec."""
    return canary(name=name, routed=True)


def gateway_rollout(name: str) -> Rollout:
    return _canary(name, {"plugins": {PLUGIN: {"httpRoute": name}}})


def istio_rollout(name: str) -> Rollout:
    return _canary(name, {"istio": {"virtualService": {"name": name, "routes": ["primary"]}}})


def nginx_rollout(name: str) -> Rollout:
    return _canary(name, {"nginx": {"stableIngress": name}})


def smi_rollout(name: str) -> Rollout:
    return _canary(name, {"smi": {"trafficSplitName": name}})


def http_route(name: str) -> dict[str, Any]:
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


def virtual_service(name: str) -> dict[str, Any]:
    destinations = [
        {"destination": {"host": f"{name}-stable", "port": {"number": 80}}, "weight": 100},
        {"destination": {"host": f"{name}-canary", "port": {"number": 80}}, "weight": 0},
    ]
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [name], "http": [{"name": "primary", "route": destinations}]},
    }


def ingress(name: str) -> dict[str, Any]:
    backend = {"service": {"name": f"{name}-stable", "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": f"{name}.example", "http": {"paths": [path]}}]},
    }


def composite(_: pytest.FixtureRequest) -> TrafficRouter:
    """Several routers of one Rollout, driven as one (nginx + smi in a cluster)."""
    return CompositeRouter((("first", FakeRouter()), ("second", FakeRouter())))


def proxy_router(request: pytest.FixtureRequest) -> TrafficRouter:
    """The embedded proxy's router over the session's proxy processes, reset to all traffic on stable."""
    proxies: dict[str, Running] = request.getfixturevalue("proxies")
    for running in proxies.values():
        call("PUT", running.admin + "/state", {"stable": "old", "weights": {"old": 100}})
    return ProxyRouter({f"default/{app}": running.admin for app, running in proxies.items()}, token=TOKEN)


def haproxy_router(request: pytest.FixtureRequest) -> TrafficRouter:
    """The HAProxy router over the session's haproxy, reset to all traffic on stable."""
    runtime: HAProxyRuntime = request.getfixturevalue("haproxy_runtime")
    for app in APPS:
        runtime.set_weight(app, "old-0", 200)
        runtime.set_weight(app, "new-0", 0)
    return HAProxyRouter(runtime)


def gateway_router(request: pytest.FixtureRequest) -> TrafficRouter:
    api = kube(request)
    for app in APPS:
        api.kube.create(HTTP_ROUTES, http_route(app))
    return GatewayApiRouter(api.kube)


def istio_router(request: pytest.FixtureRequest) -> TrafficRouter:
    api = kube(request)
    api.emulator.declare("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    for app in APPS:
        api.kube.create(VIRTUAL_SERVICES, virtual_service(app))
    return IstioRouter(api.kube)


def nginx_router(request: pytest.FixtureRequest) -> TrafficRouter:
    api = kube(request)
    for app in APPS:
        api.kube.create(INGRESSES, ingress(app))
    return NginxRouter(api.kube)


def smi_router(request: pytest.FixtureRequest) -> TrafficRouter:
    api = kube(request)
    api.emulator.declare("split.smi-spec.io", "v1alpha2", "trafficsplits", "TrafficSplit")
    return SmiRouter(api.kube)


@dataclass(frozen=True)
class RouterAdapter(Adapter[TrafficRouter]):
    rollout: Callable[[str], Rollout] = routed
    """The rollout named so, configured for this router (the contract uses ``web`` and ``api``)."""
    header_routes: bool = True
    """False: setHeaderRoute is refused with a PermanentError naming the route (the suite asserts it)."""
    mirror_routes: bool = True
    """False: setMirrorRoute is refused with a PermanentError naming the route (the suite asserts it)."""


ROUTERS: list[RouterAdapter] = [
    RouterAdapter("fake", FakeRouter, lambda _: FakeRouter()),
    RouterAdapter("composite", CompositeRouter, composite),
    RouterAdapter("proxy", ProxyRouter, proxy_router, real_process=True),
    RouterAdapter(
        "haproxy", HAProxyRouter, haproxy_router, real_process=True, header_routes=False, mirror_routes=False
    ),
    RouterAdapter("gatewayapi", GatewayApiRouter, gateway_router, rollout=gateway_rollout),
    RouterAdapter("istio", IstioRouter, istio_router, rollout=istio_rollout),
    RouterAdapter("nginx", NginxRouter, nginx_router, rollout=nginx_rollout, mirror_routes=False),
    RouterAdapter("smi", SmiRouter, smi_router, rollout=smi_rollout, header_routes=False, mirror_routes=False),
]


# --- Platform -------------------------------------------------------------------------------------------------


def local_platform(request: pytest.FixtureRequest) -> Platform:
    """Real replica processes: ``sleep`` plays the image's entrypoint (the contract's rollouts name no command)."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    local = LocalPlatform(tmp_path / "platform", default_command=("sleep", "600"))
    request.addfinalizer(local.close)
    return local


def kubernetes_platform(request: pytest.FixtureRequest) -> Platform:
    api = kube(request)
    for name in ("web-stable", "web-canary", "web-active", "web-preview"):
        api.kube.create(SERVICES, {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {}}})
    return KubernetesPlatform(api.kube)


PLATFORMS: list[Adapter[Platform]] = [
    Adapter("fake", FakePlatform, lambda _: FakePlatform()),
    Adapter("local", LocalPlatform, local_platform, real_process=True),
    Adapter("kubernetes", KubernetesPlatform, kubernetes_platform),
]


# --- StatusStore ----------------------------------------------------------------------------------------------


def sqlite_store(request: pytest.FixtureRequest) -> StatusStore:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    sqlite = SqliteStore(tmp_path / "store")
    request.addfinalizer(sqlite.close)
    return sqlite


def kubernetes_store(request: pytest.FixtureRequest) -> StatusStore:
    """The /status subresource of Rollout objects (the contract's keys ``default/web`` and ``default/api``)."""
    api = kube(request)
    for app in APPS:
        api.kube.create(rollouts(), {"metadata": {"name": app, "namespace": "default"}, "spec": {}})
    return KubernetesStatusStore(api.kube)


STORES: list[Adapter[StatusStore]] = [
    Adapter("memory", MemoryStore, lambda _: MemoryStore()),
    Adapter("sqlite", SqliteStore, sqlite_store),
    Adapter("k8s_status", KubernetesStatusStore, kubernetes_store),
]


# --- RunBackend -----------------------------------------------------------------------------------------------


TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "error-rate", "namespace": "default"},
    "spec": {
        "metrics": [
            {
                "name": "rate",
                "interval": "1h",
                "successCondition": "result > 0.9",
                "provider": {"plugin": {"static": {"values": [0.99]}}},
            }
        ]
    },
}
"""The template the contract's analysis runs reference: one static measurement (the runs contract is about
starting, stopping and observing runs, not about measuring)."""


@dataclass(frozen=True)
class RunAdapter(Adapter[RunBackend]):
    settle: Callable[[RunBackend], None] = lambda _: None
    """Let the backend's own machinery act once (its measuring loop), as it would between two passes: where a
    terminate is a request (an AnalysisRun's ``spec.terminate``), this is what completes the run."""


def _providers() -> dict[str, MetricProvider]:
    return {StaticProvider.type: StaticProvider()}


def executor(_: pytest.FixtureRequest) -> RunBackend:
    template = AnalysisTemplate.model_validate(TEMPLATE)
    return AnalysisExecutor(templates={"default/error-rate": template}, providers=_providers())


def tick(backend: RunBackend) -> None:
    assert isinstance(backend, AnalysisExecutor)
    asyncio.run(backend.tick(datetime.now(UTC)))


def simulated(request: pytest.FixtureRequest) -> RunBackend:
    template = AnalysisTemplate.model_validate(TEMPLATE)
    sim = SimAnalysis(templates={"default/error-rate": template}, providers=_providers(), now=EPOCH)
    request.addfinalizer(sim.close)
    return sim


def advance(backend: RunBackend) -> None:
    assert isinstance(backend, SimAnalysis)
    backend.advance(backend.now + timedelta(seconds=1))


def kubernetes_runs(request: pytest.FixtureRequest) -> RunBackend:
    """AnalysisRun and Experiment objects on the emulator, measured by the controller's `RunMeasurer`."""
    api = kube(request)
    api.kube.create(analysis_templates(DEFAULT_GROUP), TEMPLATE)
    backend = KubernetesRunBackend(api.kube, DEFAULT_GROUP)
    _measurers[id(backend)] = (api, RunMeasurer(api.client, DEFAULT_GROUP, _providers()))
    request.addfinalizer(lambda: _measurers.pop(id(backend), None))
    return backend


_measurers: dict[int, tuple[ApiServer, RunMeasurer]] = {}


def measure(backend: RunBackend) -> None:
    api, measurer = _measurers[id(backend)]
    for app in APPS:
        call = measurer.measure("default", app, datetime.now(UTC), (5, 5))
        asyncio.run_coroutine_threadsafe(call, api.loop).result(30)


RUN_BACKENDS: list[RunAdapter] = [
    RunAdapter("scripted", ScriptedRuns, lambda _: ScriptedRuns()),
    RunAdapter("executor", AnalysisExecutor, executor, settle=tick),
    RunAdapter("simulated", SimAnalysis, simulated, settle=advance),
    RunAdapter("kubernetes", KubernetesRunBackend, kubernetes_runs, settle=measure),
]


def every_adapter() -> Iterator[Adapter[Any]]:
    yield from ROUTERS
    yield from PLATFORMS
    yield from STORES
    yield from RUN_BACKENDS
