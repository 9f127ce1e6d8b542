"""NGINX Ingress router: a canary Ingress next to the user's, carrying the canary annotations.

Configured as Argo does: ``trafficRouting.nginx.stableIngress`` names the user's Ingress, which is never
modified. Headway owns a copy named ``<rollout>-<stableIngress>-canary`` whose backends point at the canary
Service and whose ``nginx.ingress.kubernetes.io/canary-weight`` is the canary weight; `restore` deletes it.
setHeaderRoute maps to ``canary-by-header`` (one header, exact value or regex, as ingress-nginx supports);
mirroring is not something ingress-nginx canaries do, so it is refused naming the step. ingress-nginx exposes no
status for canaries, so read-back is the object (`Verification.NOT_IMPLEMENTED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError
from headway.core.observation import Drift, DriftKind, RouterState
from headway.kube.client import BlockingKube, Kind
from headway.routers.base import Verification
from headway.routers.drift import route_drift, show, weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch

INGRESSES = Kind("networking.k8s.io", "v1", "Ingress", "ingresses")
PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
BY_HEADER = PREFIX + "canary-by-header"
BY_HEADER_VALUE = PREFIX + "canary-by-header-value"
BY_HEADER_PATTERN = PREFIX + "canary-by-header-pattern"
MANAGED_BY_LABEL = "headway.dev/rollout"


@dataclass(frozen=True)
class Target:
    stable_ingress: str
    canary_ingress: str
    namespace: str
    canary_service: str
    stable_service: str


def target_of(rollout: Rollout) -> Target:
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary else None
    config = routing.nginx if routing else None
    path = "spec.strategy.canary.trafficRouting.nginx"
    if canary is None or not isinstance(config, Mapping) or not config.get("stableIngress"):
        raise PermanentError(f"{path}.stableIngress: required for the NGINX router")
    if not canary.canary_service or not canary.stable_service:
        raise PermanentError("spec.strategy.canary.canaryService and stableService are required with trafficRouting")
    stable = str(config["stableIngress"])
    return Target(
        stable,
        f"{rollout.name}-{stable}-canary",
        rollout.metadata.namespace,
        canary.canary_service,
        canary.stable_service,
    )


def _retarget(value: Any, target: Target) -> Any:
    """Every ``service.name`` equal to the stable Service, pointed at the canary Service instead."""
    if isinstance(value, Mapping):
        changed = {key: _retarget(item, target) for key, item in value.items()}
        service = changed.get("service")
        if isinstance(service, Mapping) and service.get("name") == target.stable_service:
            changed["service"] = {**service, "name": target.canary_service}
        return changed
    if isinstance(value, list):
        return [_retarget(item, target) for item in value]
    return value


def desired_object(
    stable: Mapping[str, Any], target: Target, canary_weight: int, rollout: str, header: Mapping[str, str] | None
) -> dict[str, Any]:
    """The canary Ingress for the user's ``stable`` Ingress at ``canary_weight`` (plus an optional header match)."""
    meta = stable.get("metadata") or {}
    kept = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(PREFIX + "canary")}
    annotations = {**kept, CANARY: "true", WEIGHT: str(canary_weight), **(header or {})}
    return {
        "metadata": {
            "name": target.canary_ingress,
            "namespace": target.namespace,
            "labels": {**(meta.get("labels") or {}), MANAGED_BY_LABEL: rollout},
            "annotations": annotations,
        },
        "spec": _retarget(stable.get("spec") or {}, target),
    }


def header_annotations(match: Sequence[HeaderRoutingMatch]) -> dict[str, str]:
    if len(match) != 1:
        raise PermanentError("setHeaderRoute: ingress-nginx canaries match exactly one header")
    (only,) = match
    if only.header_value.exact is not None:
        return {BY_HEADER: only.header_name, BY_HEADER_VALUE: only.header_value.exact}
    if only.header_value.regex is not None:
        return {BY_HEADER: only.header_name, BY_HEADER_PATTERN: only.header_value.regex}
    return {BY_HEADER: only.header_name, BY_HEADER_PATTERN: f"^{only.header_value.prefix}.*"}


def parse_weight(annotations: Mapping[str, Any]) -> int | None:
    """The canary-weight annotation as ingress-nginx reads it (absent: 0); None when it is not a whole number
    within 0..100 (a hand edit such as ``100%``): unreadable, which `drift_of` reports and the repair rewrites."""
    value = annotations.get(WEIGHT, "0")
    text = value.strip() if isinstance(value, str) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        return None
    weight = int(text)
    return weight if weight <= 100 else None


HEADER_ROUTE = "canary-by-header"
"""The name a header route found on the canary Ingress is reported under when the status names none."""


def drift_of(canary: Mapping[str, Any] | None, expected: ExpectedRouting | None) -> tuple[Drift, ...]:
    """The canary Ingress's weight and header annotations against what the setters would write."""
    if expected is None:
        return ()
    annotations = (canary or {}).get("metadata", {}).get("annotations") or {}
    present = canary is not None and WEIGHT in annotations
    found = f"canary weight {show(annotations[WEIGHT])}" if present else "no canary Ingress"
    live = {k: v for k, v in annotations.items() if k.startswith(BY_HEADER)}
    wanted = {name: header_annotations(match) for name, match in expected.header_routes[-1:]}
    name = next(iter(wanted), None) or next(iter(expected.unknown_routes), None) or HEADER_ROUTE
    return (
        *weight_drift(expected, found, f"canary weight {expected.canary_weight}"),
        *route_drift(DriftKind.HEADER_ROUTE, wanted, {name: live} if live else {}, expected.unknown_routes),
    )


class NginxRouter:
    """Implements `headway.routers.base.TrafficRouter` with a canary Ingress Headway owns."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def _apply(
        self,
        rollout: Rollout,
        *,
        weight: int | None = None,
        header: Mapping[str, str] | None = None,
        clear_header: bool = False,
    ) -> None:
        target = target_of(rollout)
        stable = self._kube.get(INGRESSES, target.stable_ingress, target.namespace)
        if stable is None:
            raise PermanentError(f"{target.namespace}/{target.stable_ingress}: the stable Ingress does not exist")
        current = self._kube.get(INGRESSES, target.canary_ingress, target.namespace)
        annotations = (current or {}).get("metadata", {}).get("annotations") or {}
        if weight is None:
            # Keep the weight in force; an unreadable one becomes 0 (no canary traffic) until the repair sets it.
            weight = parse_weight(annotations) or 0
        if header is None and not clear_header:
            header = {k: v for k, v in annotations.items() if k.startswith(BY_HEADER)}
        desired = desired_object(stable, target, weight, rollout.name, header)
        if current is None:
            self._kube.create(INGRESSES, desired)
            return
        removed = {
            k: None
            for k in annotations
            if k.startswith(PREFIX + "canary") and k not in desired["metadata"]["annotations"]
        }
        if (
            desired["spec"] == current.get("spec")
            and not removed
            and all(annotations.get(k) == v for k, v in desired["metadata"]["annotations"].items())
        ):
            return
        patch = {
            "metadata": {
                "resourceVersion": current["metadata"].get("resourceVersion"),
                "annotations": {**desired["metadata"]["annotations"], **removed},
            },
            "spec": desired["spec"],
        }
        self._kube.patch(INGRESSES, target.canary_ingress, target.namespace, patch)

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        self._apply(rollout, weight=canary_weight)

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        if match is None:
            self._apply(rollout, clear_header=True)
        else:
            self._apply(rollout, header=header_annotations(match))

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        if match is not None:
            raise PermanentError(f"setMirrorRoute {name!r}: ingress-nginx canaries cannot mirror traffic")

    def remove_managed_routes(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        if self._kube.get(INGRESSES, target.canary_ingress, target.namespace) is not None:
            self._apply(rollout, clear_header=True)

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        target = target_of(rollout)
        current = self._kube.get(INGRESSES, target.canary_ingress, target.namespace)
        annotations = (current or {}).get("metadata", {}).get("annotations") or {}
        weight = parse_weight(annotations)
        verified = False if weight is None else Verification.NOT_IMPLEMENTED.as_bool()
        return RouterState(weight, verified, drift=drift_of(current, expected))

    def restore(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        self._kube.delete(INGRESSES, target.canary_ingress, target.namespace)
