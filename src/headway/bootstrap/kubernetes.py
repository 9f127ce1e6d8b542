"""Kubernetes mode, wired: the engine of each admitted Rollout, built from the registry's Kubernetes entry.

The controller (`headway.runtimes.kubernetes.controller`) runs one pass per Rollout and builds that pass's
engine with the factory given here (`engine_for`): every router the Rollout configures, built by the factory the
mode registry (`headway.engine.modes`) lists for its name (`CompositeRouter` when there are several, as Argo
reconciles each), the cluster platform, the AnalysisRun/Experiment backend and the ``/status`` store. Admission
refused any router the registry does not list before this runs. Gate webhooks (``spec.webhooks``) are called
through the controller's gate backend, which `build_controller` gives it from the registry (none where the
registry lists none, and admission then refuses webhooks).

Router adapters are imported when a Rollout needs one, so `build_controller` loads every one the registry lists
first: a controller that could not build one of them refuses to start. A router that still cannot be built in a
pass (its constructor failed) is an `UnavailableRouter`, whose every read and write fails with the reason: the
Rollout gets ``RouterUnreadable``/``ActionFailed`` warnings naming the field and holds where it is, instead of a
traceback in the controller's log and nothing on the Rollout.

The metric providers are the controller's (`headway.runtimes.kubernetes.analysis.cluster_providers`); the
registry lists the same types (a contract test holds them together). Notifications go where ``headway controller
--notify FILE`` says (the same file format as embedded mode's), from the leader only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import RouterState
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
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch
from headway.stores.k8s_status import KubernetesStatusStore, label_selector

REGISTRY = modes.KUBERNETES


def router_for(rollout: Rollout, kube: BlockingKube) -> TrafficRouter | None:
    """The Rollout's router: None without trafficRouting, the one configured, or all of them as one."""
    canary = rollout.spec.strategy.canary
    names = canary.traffic_routing.routers() if canary is not None and canary.traffic_routing is not None else []
    if len(names) == 1:
        return _built(names[0], kube)
    return CompositeRouter(tuple((name, _built(name, kube)) for name in names)) if names else None


def _built(name: str, kube: BlockingKube) -> TrafficRouter:
    try:
        return REGISTRY.router(name, kube)
    except modes.RouterUnavailableError as error:
        return UnavailableRouter(error)


class UnavailableRouter:
    """A router the registry lists but that could not be built: every call fails with why (a `PermanentError`),
    so the engine reports the weight as unread and the action as failed, and the Rollout does not move."""

    def __init__(self, error: modes.RouterUnavailableError) -> None:
        self.error = error

    def _fail(self) -> modes.RouterUnavailableError:
        return modes.RouterUnavailableError(str(self.error))

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        raise self._fail()

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        raise self._fail()

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        raise self._fail()

    def remove_managed_routes(self, rollout: Rollout) -> None:
        raise self._fail()

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        raise self._fail()

    def restore(self, rollout: Rollout) -> None:
        raise self._fail()


def load_adapters() -> None:
    """Import every router adapter the Kubernetes mode lists; `headway.engine.modes.RouterUnavailableError`
    naming the first that cannot be (the controller then refuses to start)."""
    REGISTRY.load_routers()


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
    """The controller of ``config``, building its engines with `engine_for`, and its gate backend (if the mode's
    registry lists one) and notifier from the registry and ``config``; `RouterUnavailableError` when a router the
    mode lists cannot be loaded."""
    load_adapters()
    notifier = Notifier(config.notify) if config.notify is not None and config.notify.sinks else None
    return Controller(config, client, engines=engine_for, gates=REGISTRY.gates, notifier=notifier)
