"""From a Rollout object to an engine: admission (load + validate) and the router chosen by trafficRouting.

Kept apart from the kopf handlers so the choices are plain functions: an invalid Rollout yields the problems to
report (an ``InvalidSpec`` condition and an Event), never an exception that would crash-loop the worker; an
unknown router is one of those problems. The router registry is explicit: a name not listed here is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headway.engine.reconcile import Engine
from headway.platforms.kubernetes import KubernetesPlatform
from headway.routers.base import TrafficRouter
from headway.routers.gatewayapi import PLUGIN as GATEWAY_API_PLUGIN
from headway.routers.gatewayapi import GatewayApiRouter
from headway.routers.istio import IstioRouter
from headway.routers.nginx import NginxRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.kubernetes.client import BlockingKube, rollouts
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
    unknown = [
        f"spec.strategy.canary.trafficRouting: router {name!r} is not supported"
        for name in _routers(rollout)
        if name not in ROUTERS
    ]
    if findings or unknown:
        return Admission(None, tuple(findings + unknown))
    return Admission(rollout)


def _routers(rollout: Rollout) -> list[str]:
    canary = rollout.spec.strategy.canary
    if canary is None or canary.traffic_routing is None:
        return []
    return canary.traffic_routing.routers()


def engine_for(rollout: Rollout, kube: BlockingKube, group: str, *, cached: dict[str, Any] | None = None) -> Engine:
    """The adapters for one rollout: its router (if any) and the shared platform, runs and status store
    (``cached``: the Rollout as the watch delivered it, read instead of a GET at the start of the pass)."""
    names = _routers(rollout)
    router = ROUTERS[names[0]](kube) if names else None
    return Engine(
        platform=KubernetesPlatform(kube),
        router=router,
        runs=KubernetesRunBackend(kube, group),
        store=KubernetesStatusStore(
            kube, rollouts(group), selector=label_selector(rollout.spec.selector), cached=cached
        ),
    )
