"""SMI TrafficSplit router (legacy meshes: Linkerd before Gateway API, Open Service Mesh).

Configured as Argo does: ``trafficRouting.smi`` with ``rootService`` (default: the stable Service) and
``trafficSplitName`` (default: the rollout's name). Headway owns the TrafficSplit: it creates it on the first
weight, keeps its two backends at ``canary``/``100 - canary``, and `restore` deletes it (the user's object is the
root Service, which is never touched). SMI has no header or mirror routes; asking for one is a permanent error
naming the step, not a silent no-op. A TrafficSplit has no status, so read-back is the object itself
(`Verification.NOT_IMPLEMENTED` for the data plane).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError
from headway.core.observation import Drift, RouterState
from headway.kube.client import BlockingKube, Kind
from headway.routers.base import Verification
from headway.routers.drift import weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch

TRAFFIC_SPLITS = Kind("split.smi-spec.io", "v1alpha2", "TrafficSplit", "trafficsplits")
MANAGED_BY_LABEL = "headway.dev/rollout"


@dataclass(frozen=True)
class Target:
    name: str
    namespace: str
    root_service: str
    canary_service: str
    stable_service: str


def target_of(rollout: Rollout) -> Target:
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary else None
    config = routing.smi if routing else None
    if canary is None or config is None:
        raise PermanentError("spec.strategy.canary.trafficRouting.smi: required for the SMI router")
    if not canary.canary_service or not canary.stable_service:
        raise PermanentError("spec.strategy.canary.canaryService and stableService are required with trafficRouting")
    return Target(
        name=str(config.get("trafficSplitName") or rollout.name),
        namespace=rollout.metadata.namespace,
        root_service=str(config.get("rootService") or canary.stable_service),
        canary_service=canary.canary_service,
        stable_service=canary.stable_service,
    )


def desired_object(
    current: Mapping[str, Any] | None, target: Target, canary_weight: int, rollout: str
) -> dict[str, Any]:
    """The TrafficSplit sending ``canary_weight`` percent to the canary; other fields of ``current`` kept."""
    base = dict(current or {})
    metadata = dict(base.get("metadata") or {"name": target.name, "namespace": target.namespace})
    metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: rollout}
    return {
        **base,
        "metadata": metadata,
        "spec": {
            **(base.get("spec") or {}),
            "service": target.root_service,
            "backends": [
                {"service": target.canary_service, "weight": canary_weight},
                {"service": target.stable_service, "weight": 100 - canary_weight},
            ],
        },
    }


def canary_weight_of(split: Mapping[str, Any], target: Target) -> int | None:
    """The canary's share of the split; None when it has no canary backend or a weight that is not a whole
    number (a hand edit, or an older API's quantity such as ``500m``): unreadable, reported as drift and
    rewritten, never a crash of the pass."""
    weights: dict[object, int] = {}
    for backend in (split.get("spec") or {}).get("backends") or []:
        value = backend.get("weight") or 0 if isinstance(backend, Mapping) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        weights[backend.get("service")] = value
    if target.canary_service not in weights:
        return None
    total = sum(weights.values())
    return 0 if total == 0 else round(100 * weights[target.canary_service] / total)


class SmiRouter:
    """Implements `headway.routers.base.TrafficRouter` with a TrafficSplit Headway owns."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        target = target_of(rollout)
        current = self._kube.get(TRAFFIC_SPLITS, target.name, target.namespace)
        desired = desired_object(current, target, canary_weight, rollout.name)
        if current is None:
            self._kube.create(TRAFFIC_SPLITS, desired)  # created meanwhile: a 409, and the next pass patches it
            return
        if desired["spec"] != current.get("spec"):
            patch = {
                "metadata": {"resourceVersion": current["metadata"].get("resourceVersion")},
                "spec": desired["spec"],
            }
            self._kube.patch(TRAFFIC_SPLITS, target.name, target.namespace, patch)

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        if match is not None:
            raise PermanentError(f"setHeaderRoute {name!r}: SMI TrafficSplit cannot route by header")

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        if match is not None:
            raise PermanentError(f"setMirrorRoute {name!r}: SMI TrafficSplit cannot mirror traffic")

    def remove_managed_routes(self, rollout: Rollout) -> None:
        """Nothing to remove: SMI never had header or mirror routes."""

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        """SMI manages only the split: its two backends' weights are compared with what `set_weight` writes."""
        target = target_of(rollout)
        split = self._kube.get(TRAFFIC_SPLITS, target.name, target.namespace)
        weight = canary_weight_of(split, target) if split is not None else 0
        drift: tuple[Drift, ...] = ()
        if expected is not None:
            live = (split or {}).get("spec", {}).get("backends") if split is not None else "no TrafficSplit"
            wanted = desired_object(split, target, expected.canary_weight, rollout.name)["spec"]["backends"]
            drift = weight_drift(expected, live, wanted)
        verified = False if weight is None and expected is not None else Verification.NOT_IMPLEMENTED.as_bool()
        return RouterState(canary_weight=weight, verified=verified, drift=drift)

    def restore(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        split = self._kube.get(TRAFFIC_SPLITS, target.name, target.namespace)
        if split is not None and (split["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == rollout.name:
            self._kube.delete(TRAFFIC_SPLITS, target.name, target.namespace)
