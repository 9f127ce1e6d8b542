"""From a Rollout object to an engine: admission (load + validate + what this mode can do) and its adapters.

Kept apart from the kopf handlers so the choices are plain functions: an invalid Rollout yields the problems to
report (an ``InvalidSpec`` condition and an Event), never an exception that would crash-loop the worker. What the
mode cannot do (`headway.engine.admission`, mode ``kubernetes``: a router not listed here, an embedded-only
metric provider, a plugin step) is one of those problems. The router registry is explicit: a name not listed
here is refused. Every router a Rollout configures is driven (`CompositeRouter` when there are several, as Argo
reconciles each), and gate webhooks (``spec.webhooks``) are called through the controller's `GateBackend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headway.engine import admission
from headway.engine.gates import GateBackend
from headway.engine.reconcile import Engine
from headway.kube.client import BlockingKube, rollouts
from headway.platforms.kubernetes import KubernetesPlatform
from headway.routers.base import TrafficRouter
from headway.routers.composite import CompositeRouter
from headway.routers.gatewayapi import PLUGIN as GATEWAY_API_PLUGIN
from headway.routers.gatewayapi import GatewayApiRouter
from headway.routers.istio import IstioRouter
from headway.routers.nginx import NginxRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.kubernetes.runs import KubernetesRunBackend
from headway.spec.load import load_document
from headway.spec.rollout import Rollout
from headway.spec.validate import check_rollout
from headway.stores.k8s_status import KubernetesStatusStore, label_selector

RouterFactory = Callable[[BlockingKube], TrafficRouter]

ROUTERS: Mapping[str, RouterFactory] = {
    GATEWAY_API_PLUGIN: GatewayApiRouter,
    "gatewayAPI": GatewayApiRouter,
    "smi": SmiRouter,
    "istio": IstioRouter,
    "nginx": NginxRouter,
}
"""trafficRouting names (router keys and plugin names) → adapter; anything else is an InvalidSpec."""


@dataclass(frozen=True)
class Admission:
    """A Rollout ready to reconcile, or why it is not."""

    rollout: Rollout | None
    problems: tuple[str, ...] = ()


def admit(body: Mapping[str, Any]) -> Admission:
    """Load and validate a Rollout object as the API server handed it; problems are ``path: message`` lines."""
    document = load_document(dict(body), file="<cluster>")
    errors = [f"{problem.path}: {problem.message}" for problem in document.problems if problem.is_error]
    if errors or not isinstance(document.model, Rollout):
        return Admission(None, tuple(errors) or ("not a Rollout",))
    rollout = document.model
    findings = [f"{f.path}: {f.message}" for f in check_rollout(rollout) if str(f.severity) == "error"]
    lacking = [
        f"{problem.path}: {problem.message}"
        for problem in admission.admit(document, admission.Mode.KUBERNETES)
        if problem.is_error
    ]
    if findings or lacking:
        return Admission(None, tuple(findings + lacking))
    return Admission(rollout)


def _routers(rollout: Rollout) -> list[str]:
    canary = rollout.spec.strategy.canary
    if canary is None or canary.traffic_routing is None:
        return []
    return canary.traffic_routing.routers()


def router_for(rollout: Rollout, kube: BlockingKube) -> TrafficRouter | None:
    """The Rollout's router: None without trafficRouting, the one configured, or all of them as one."""
    names = _routers(rollout)
    if len(names) == 1:
        return ROUTERS[names[0]](kube)
    return CompositeRouter(tuple((name, ROUTERS[name](kube)) for name in names)) if names else None


def engine_for(
    rollout: Rollout,
    kube: BlockingKube,
    group: str,
    gates: GateBackend | None = None,
    *,
    cached: dict[str, Any] | None = None,
) -> Engine:
    """The adapters for one (admitted) rollout: its router(s) and the shared platform, runs, status store and
    gates (shared by the controller: the answers of gates asked in one pass are read in a later one); ``cached``
    is the Rollout as the watch delivered it, read instead of a GET at the start of the pass."""
    return Engine(
        platform=KubernetesPlatform(kube),
        router=router_for(rollout, kube),
        runs=KubernetesRunBackend(kube, group),
        store=KubernetesStatusStore(
            kube, rollouts(group), selector=label_selector(rollout.spec.selector), cached=cached
        ),
        gates=gates,
    )
