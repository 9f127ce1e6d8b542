"""The mode registry: what each mode is made of, in one table that admission and both modes' wiring read.

Per mode: the traffic routers it drives (``trafficRouting`` name → what the router can do, and the factory that
builds its adapter), the metric providers it runs, whether it calls gate webhooks (and with what) and delivers
notifications, and the rest of what a manifest may ask (step kinds, kinds, pod metadata...). Modes differ only
in this table:

- `headway.engine.admission` refuses a manifest that asks for something a mode's entry lacks, naming the field;
- the composition root (`headway.bootstrap`) builds each mode's engine from the same entry: the router a Rollout
  names is built by the factory listed here, the providers are the ones listed here, gates are built here.

A router listed with its ability is therefore a router the mode really drives, and a router the mode builds is
one admission lets through: there is no second list to keep in step.

Router factories import their adapter when called, not here: admission (and so ``headway lint`` and the
embedded mode) reads this table without loading the Kubernetes client the cluster routers are built on. Each
entry names its adapter's module, so a mode's wiring loads them all when it starts (`ModeRegistry.load_routers`):
an adapter that cannot be imported (a missing extra, a broken install) stops the start with the router named,
instead of surfacing on the first Rollout that routes through it. Building a router that fails anyway is a
`RouterUnavailableError` naming the ``trafficRouting`` field, never a bare ImportError.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from headway.core.errors import PermanentError
from headway.engine.gates import HttpGates
from headway.spec.rollout import TrafficRouting

if TYPE_CHECKING:
    from headway.kube.client import BlockingKube
    from headway.routers.base import TrafficRouter
    from headway.routers.proxy import ProxyAdmin

PROXY_PLUGIN = "headway.dev/proxy"
GATEWAY_API_PLUGIN = "argoproj-labs/gatewayAPI"

Context = TypeVar("Context")
"""What a mode's router factories are built on (the cluster's API for Kubernetes, the proxies for embedded)."""


class Mode(StrEnum):
    """Where Headway runs a rollout."""

    EMBEDDED = "embedded"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class RouterAbility:
    """What one traffic router of a mode can do besides weights."""

    header_routes: bool
    mirror_routes: bool
    header_matches: int | None = None
    """The most header matches one setHeaderRoute may have (None: any number)."""
    header_routes_at_once: int | None = None
    """The most header routes that may be in force at once (None: any number)."""


class RouterUnavailableError(PermanentError):
    """A router the mode lists whose adapter cannot be imported or built: the mode cannot drive it, so nothing
    may be reported as routed through it (the message names the ``trafficRouting`` field and why)."""


@dataclass(frozen=True)
class RouterEntry(Generic[Context]):
    """One router a mode drives: what it can do (for admission) and how to build it (for the wiring)."""

    ability: RouterAbility
    build: Callable[[Context], TrafficRouter]
    adapter: str
    """The module ``build`` imports its adapter from (loaded up front by `ModeRegistry.load_routers`)."""


@dataclass(frozen=True)
class ModeRegistry(Generic[Context]):
    """Everything one mode can do with a manifest, and what it is built from (what is not listed, it cannot)."""

    mode: Mode
    routers: Mapping[str, RouterEntry[Context]]
    """``trafficRouting`` keys (``istio``, ``nginx``...; plugins by name) the mode drives, and their adapters."""
    routing_hint: str
    """How to route in this mode, for the message that refuses a router."""
    several_routers: bool
    """Whether several routers of one Rollout are all driven (and all verified)."""
    providers: frozenset[str]
    """Metric provider types the mode runs (a plugin provider by its plugin name); the wiring builds exactly
    these and refuses to start when it cannot."""
    step_kinds: frozenset[str]
    gates: Callable[[], HttpGates] | None
    """What calls ``spec.webhooks`` gates (None: the mode calls none, and refuses a Rollout that has some)."""
    notifications: str | None
    """How the mode delivers notifications (``headway up --notify``...), None when it delivers none."""
    workload_ref: bool
    kinds: frozenset[str]
    """Kinds of manifest the mode acts on."""
    pod_metadata: bool
    """canaryMetadata/stableMetadata/activeMetadata/previewMetadata are applied to running replicas."""
    preview_endpoint: bool
    """A blue/green ``previewService`` serves the preview revision."""
    max_traffic_weight: int = 100
    """The scale the mode's routers weigh traffic on (Argo's ``maxTrafficWeight``)."""

    def router(self, name: str, context: Context) -> TrafficRouter:
        """The adapter of router ``name`` on ``context``; KeyError for a router the mode does not drive (which
        admission refused before anything is built), `RouterUnavailableError` when its adapter cannot be
        imported or built."""
        entry = self.routers[name]
        try:
            return entry.build(context)
        except Exception as error:  # an ImportError (missing extra) or a constructor's bug: named, never bare
            raise RouterUnavailableError(self._unavailable(name, entry, error)) from error

    def load_routers(self) -> None:
        """Import every router adapter the mode lists, so a mode whose wiring cannot build one refuses to start
        (`RouterUnavailableError` naming the router) instead of failing the first Rollout that routes through it."""
        for name, entry in self.routers.items():
            try:
                importlib.import_module(entry.adapter)
            except ImportError as error:
                raise RouterUnavailableError(self._unavailable(name, entry, error)) from error

    def _unavailable(self, name: str, entry: RouterEntry[Context], error: Exception) -> str:
        detail = f"{type(error).__name__}: {error}" if not isinstance(error, ImportError) else str(error)
        return (
            f"spec.strategy.canary.trafficRouting.{TrafficRouting.field_of(name)}: the {self.mode} mode cannot "
            f"build the {name} router ({entry.adapter}: {detail})"
        )


# --- the router factories (adapters imported when built: see the module docstring) ---------------------------


def _gateway_api(kube: BlockingKube) -> TrafficRouter:
    from headway.routers.gatewayapi import GatewayApiRouter

    return GatewayApiRouter(kube)


def _istio(kube: BlockingKube) -> TrafficRouter:
    from headway.routers.istio import IstioRouter

    return IstioRouter(kube)


def _nginx(kube: BlockingKube) -> TrafficRouter:
    from headway.routers.nginx import NginxRouter

    return NginxRouter(kube)


def _smi(kube: BlockingKube) -> TrafficRouter:
    from headway.routers.smi import SmiRouter

    return SmiRouter(kube)


def _proxy(proxies: ProxyAdmin) -> TrafficRouter:
    from headway.routers.proxy import ProxyRouter

    # the proxy's instance, so the engine tells a restarted proxy from an edited one
    return ProxyRouter(proxies.admin_url, token=proxies.token, instance_of=proxies.instance)


# --- the table ---------------------------------------------------------------------------------------------------

COMMON_STEPS = frozenset({"setWeight", "pause", "analysis", "setCanaryScale", "setHeaderRoute", "setMirrorRoute"})
COMMON_PROVIDERS = frozenset({"prometheus", "web", "job", "static"})
"""`headway.providers.registry.default_registry`'s types (``job``: a local process, or a batch Job in a cluster)."""
ALL_KINDS = frozenset({"Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment"})
_EVERYTHING = RouterAbility(header_routes=True, mirror_routes=True)

EMBEDDED: ModeRegistry[ProxyAdmin] = ModeRegistry(
    mode=Mode.EMBEDDED,
    routers={PROXY_PLUGIN: RouterEntry(_EVERYTHING, _proxy, "headway.routers.proxy")},
    routing_hint=f"it routes with its built-in proxy: use trafficRouting.plugins[{PROXY_PLUGIN}], or no trafficRouting",
    several_routers=False,
    providers=COMMON_PROVIDERS | {"proxy"},
    step_kinds=COMMON_STEPS,
    gates=HttpGates,
    notifications="headway up --notify FILE, or <state-dir>/notify.yaml",
    workload_ref=False,
    kinds=ALL_KINDS - {"Experiment"},
    pod_metadata=False,
    preview_endpoint=False,
)

KUBERNETES: ModeRegistry[BlockingKube] = ModeRegistry(
    mode=Mode.KUBERNETES,
    routers={
        "istio": RouterEntry(_EVERYTHING, _istio, "headway.routers.istio"),
        # ingress-nginx canaries carry one canary-by-header annotation set: one header, one route.
        "nginx": RouterEntry(
            RouterAbility(header_routes=True, mirror_routes=False, header_matches=1, header_routes_at_once=1),
            _nginx,
            "headway.routers.nginx",
        ),
        "smi": RouterEntry(RouterAbility(header_routes=False, mirror_routes=False), _smi, "headway.routers.smi"),
        # by Argo's plugin name only: the adapter reads its config there (a bare "gatewayAPI" is refused by name)
        GATEWAY_API_PLUGIN: RouterEntry(_EVERYTHING, _gateway_api, "headway.routers.gatewayapi"),
    },
    routing_hint="use istio, nginx, smi or plugins[argoproj-labs/gatewayAPI]",
    several_routers=True,
    providers=COMMON_PROVIDERS,
    step_kinds=COMMON_STEPS | {"experiment"},
    gates=HttpGates,
    notifications="headway controller --notify FILE (webhooks and Slack; every event is also a Kubernetes Event)",
    workload_ref=True,
    kinds=ALL_KINDS,
    pod_metadata=True,
    preview_endpoint=True,
)

MODES: Mapping[Mode, ModeRegistry[Any]] = {Mode.EMBEDDED: EMBEDDED, Mode.KUBERNETES: KUBERNETES}
