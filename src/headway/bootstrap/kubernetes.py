"""Kubernetes mode, wired: the engine of each admitted Rollout, built from the registry's Kubernetes entry.

The controller (`headway.runtimes.kubernetes.controller`) runs one pass per Rollout and builds that pass's
engine with the factory given here (`engine_for`): every router the Rollout configures, built by the factory the
mode registry (`headway.engine.modes`) lists for its name (`CompositeRouter` when there are several, as Argo
reconciles each), the cluster platform, the AnalysisRun/Experiment backend and the ``/status`` store. Admission
refused any router the registry does not list before this runs. Gate webhooks (``spec.webhooks``) are called
through the controller's gate backend, which `build_controller` gives it from the registry (none where the
registry lists none, and admission then refuses webhooks).

The metric providers are the controller's (`headway.runtimes.kubernetes.analysis.cluster_providers`); the
registry lists the same types (a contract test holds them together). Notifications go where ``headway controller
--notify FILE`` says (the same file format as embedded mode's), from the leader only.
"""

from __future__ import annotations

from typing import Any

from headway.engine import modes
from headway.engine.gates import GateBackend
from headway.engine.notify import Notifier
from headway.engine.reconcile import Engine
from headway.kube.client import BlockingKube, KubeClient, rollouts
from headway.platforms.kubernetes import KubernetesPlatform
from headway.routers.base import TrafficRouter
from headway.routers.composite import CompositeRouter
from headway.runtimes.kubernetes.controller import Controller, ControllerConfig
from headway.runtimes.kubernetes.runs import KubernetesRunBackend
from headway.spec.rollout import Rollout
from headway.stores.k8s_status import KubernetesStatusStore, label_selector

REGISTRY = modes.KUBERNETES


def router_for(rollout: Rollout, kube: BlockingKube) -> TrafficRouter | None:
    """The Rollout's router: None without trafficRouting, the one configured, or all of them as one."""
    canary = rollout.spec.strategy.canary
    names = canary.traffic_routing.routers() if canary is not None and canary.traffic_routing is not None else []
    if len(names) == 1:
        return REGISTRY.router(names[0], kube)
    return CompositeRouter(tuple((name, REGISTRY.router(name, kube)) for name in names)) if names else None


def engine_for(
    rollout: Rollout,
    kube: BlockingKube,
    group: str,
    gates: GateBackend | None = None,
    *,
    cached: dict[str, Any] | None = None,
) -> Engine:
    """The engine of one admitted Rollout for one pass (an `headway.runtimes.kubernetes.engines.EngineFactory`)."""
    return Engine(
        platform=KubernetesPlatform(kube),
        router=router_for(rollout, kube),
        runs=KubernetesRunBackend(kube, group),
        store=KubernetesStatusStore(
            kube, rollouts(group), selector=label_selector(rollout.spec.selector), cached=cached
        ),
        gates=gates,
    )


def build_controller(config: ControllerConfig, client: KubeClient | None = None) -> Controller:
    """The controller of ``config``, building its engines with `engine_for` and its gate backend (if the mode's
    registry lists one) from the registry."""
    notifier = Notifier(config.notify) if config.notify is not None and config.notify.sinks else None
    return Controller(config, client, engines=engine_for, gates=REGISTRY.gates, notifier=notifier)
