"""Istio traffic router: weights on a VirtualService's HTTP routes, header and mirror routes, read back, undone.

Configured as Argo does: ``trafficRouting.istio.virtualService`` with ``name`` and optional ``routes`` (the named
HTTP routes to shift; by default the only one). Host-level splitting weights destinations whose ``host`` is the
canary or stable Service; subset-level splitting (``istio.destinationRule`` with ``canarySubsetName`` and
``stableSubsetName``) weights destinations by ``subset`` instead. Header and mirror routes are HTTP routes Headway
adds in front, named ``headway-<name>``. The user's ``http`` routes are saved in an annotation before the first
change and put back by `restore`. Writes are conditional on the resourceVersion read, so a concurrent edit is a
409 and the next pass recomputes from it. VirtualServices report no data-plane status here, so read-back is the
object itself (`Verification.NOT_IMPLEMENTED`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError
from headway.core.observation import Drift, DriftKind, RouterState
from headway.kube.client import BlockingKube, Kind
from headway.routers.base import Verification
from headway.routers.drift import route_drift, show, weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch, StringMatch

VIRTUAL_SERVICES = Kind("networking.istio.io", "v1beta1", "VirtualService", "virtualservices")
ORIGINAL_ANNOTATION = "headway.dev/original-http"
ROUTE_PREFIX = "headway-"
Routes = list[dict[str, Any]]


@dataclass(frozen=True)
class Target:
    name: str
    namespace: str
    routes: tuple[str, ...]
    canary: tuple[str, str]
    """(field, value) that marks a canary destination: ("host", service) or ("subset", name)."""
    stable: tuple[str, str]


def target_of(rollout: Rollout) -> Target:
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary else None
    istio = routing.istio if routing else None
    path = "spec.strategy.canary.trafficRouting.istio"
    if canary is None or not isinstance(istio, Mapping):
        raise PermanentError(f"{path}: required for the Istio router")
    service = istio.get("virtualService")
    if not isinstance(service, Mapping) or not service.get("name"):
        raise PermanentError(f"{path}.virtualService.name: required")
    name = str(service["name"])
    namespace = rollout.metadata.namespace
    if "." in name:
        name, namespace = name.split(".", 1)
    rule = istio.get("destinationRule")
    if isinstance(rule, Mapping):
        canary_mark = ("subset", str(rule.get("canarySubsetName") or "canary"))
        stable_mark = ("subset", str(rule.get("stableSubsetName") or "stable"))
    elif canary.canary_service and canary.stable_service:
        canary_mark, stable_mark = ("host", canary.canary_service), ("host", canary.stable_service)
    else:
        raise PermanentError("spec.strategy.canary.canaryService and stableService are required for host splitting")
    routes = tuple(str(r) for r in service.get("routes") or ())
    return Target(name, namespace, routes, canary_mark, stable_mark)


# --- pure ------------------------------------------------------------------------------------------------------


def _ours(route: Mapping[str, Any]) -> bool:
    return str(route.get("name", "")).startswith(ROUTE_PREFIX)


def _selected(route: Mapping[str, Any], target: Target, user_routes: int) -> bool:
    if _ours(route):
        return False
    if target.routes:
        return route.get("name") in target.routes
    return user_routes == 1


def _is(destination: Mapping[str, Any], mark: tuple[str, str]) -> bool:
    inner = destination.get("destination")
    return isinstance(inner, Mapping) and inner.get(mark[0]) == mark[1]


def _splits(route: Mapping[str, Any], target: Target) -> bool:
    """A route with a canary and a stable destination: the only kind whose weights split traffic between them."""
    destinations = [d for d in route.get("route") or [] if isinstance(d, Mapping)]
    return any(_is(d, target.canary) for d in destinations) and any(_is(d, target.stable) for d in destinations)


def missing_split(http: Sequence[Mapping[str, Any]], target: Target) -> str | None:
    """Why the routes to shift cannot carry the split (None: every selected route can), naming what is missing.

    Every route ``routes`` names must exist and hold both destinations (one unnamed user route by default):
    a weight written to nothing changes nothing, so it is an error to report, never a step silently passed.
    """
    where = f"VirtualService {target.namespace}/{target.name}"
    user = [route for route in http if not _ours(route)]
    names = [str(route.get("name")) for route in user]
    if target.routes:
        absent = [name for name in target.routes if name not in names]
        if absent:
            return (
                f"{where}: no HTTP route named {', '.join(absent)} (spec.strategy.canary.trafficRouting.istio."
                f"virtualService.routes; the VirtualService has {', '.join(names) or 'none'})"
            )
    elif len(user) != 1:
        return (
            f"{where}: {len(user)} HTTP routes and none named in "
            "spec.strategy.canary.trafficRouting.istio.virtualService.routes (name the routes to shift)"
        )
    for route in user:
        if _selected(route, target, len(user)) and not _splits(route, target):
            lacking = [
                f"{mark[0]} {mark[1]}"
                for mark in (target.stable, target.canary)
                if not any(_is(d, mark) for d in route.get("route") or [] if isinstance(d, Mapping))
            ]
            label = repr(route["name"]) if route.get("name") else "the HTTP route"
            return f"{where}: {label} has no destination with {' and no destination with '.join(lacking)}"
    return None


def set_weights(http: Sequence[Mapping[str, Any]], target: Target, canary_weight: int) -> Routes:
    """The HTTP routes with the selected routes' canary/stable destinations weighted."""
    user_routes = sum(1 for route in http if not _ours(route))
    result: Routes = []
    for route in http:
        if not _selected(route, target, user_routes) or not _splits(route, target):
            result.append(dict(route))
            continue
        destinations = []
        for destination in route.get("route") or []:
            changed = dict(destination)
            if _is(destination, target.canary):
                changed["weight"] = canary_weight
            elif _is(destination, target.stable):
                changed["weight"] = 100 - canary_weight
            destinations.append(changed)
        result.append({**route, "route": destinations})
    return result


def _weight(destination: Mapping[str, Any]) -> int | None:
    """A destination's weight (0 when absent); None when it is not a whole number within 0..100."""
    value = destination.get("weight") or 0
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100 else None


def read_canary_weight(http: Sequence[Mapping[str, Any]], target: Target) -> int | None:
    """The canary weight of the first selected route holding both destinations (None: no such route, or its
    canary weight is not a whole number)."""
    user_routes = sum(1 for route in http if not _ours(route))
    for route in http:
        if _selected(route, target, user_routes) and _splits(route, target):
            for destination in route.get("route") or []:
                if _is(destination, target.canary):
                    return _weight(destination)
    return None


def _string(match: StringMatch) -> dict[str, str]:
    if match.exact is not None:
        return {"exact": match.exact}
    if match.prefix is not None:
        return {"prefix": match.prefix}
    return {"regex": match.regex or ""}


def _destination(target: Target, mark: tuple[str, str], http: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A destination like the user's (same host and port) but pointing at ``mark``."""
    for route in http:
        for destination in route.get("route") or []:
            if _is(destination, target.stable) or _is(destination, target.canary):
                return {**destination.get("destination", {}), mark[0]: mark[1]}
    return {mark[0]: mark[1]}


def header_route(
    http: Sequence[Mapping[str, Any]], target: Target, name: str, match: Sequence[HeaderRoutingMatch]
) -> dict[str, Any]:
    headers = {header.header_name: _string(header.header_value) for header in match}
    return {
        "name": ROUTE_PREFIX + name,
        "match": [{"headers": headers}],
        "route": [{"destination": _destination(target, target.canary, http), "weight": 100}],
    }


def mirror_route(
    http: Sequence[Mapping[str, Any]], target: Target, name: str, match: Sequence[RouteMatch], percentage: int
) -> dict[str, Any]:
    matches = []
    for route_match in match:
        entry: dict[str, Any] = {}
        if route_match.path is not None:
            entry["uri"] = _string(route_match.path)
        if route_match.method is not None:
            entry["method"] = _string(route_match.method)
        if route_match.headers:
            entry["headers"] = {key: _string(value) for key, value in route_match.headers.items()}
        matches.append(entry)
    return {
        "name": ROUTE_PREFIX + name,
        "match": matches,
        "route": [{"destination": _destination(target, target.stable, http), "weight": 100}],
        "mirror": _destination(target, target.canary, http),
        "mirrorPercentage": {"value": float(percentage)},
    }


def put_route(http: Sequence[Mapping[str, Any]], route: Mapping[str, Any] | None, name: str) -> Routes:
    ours = [dict(r) for r in http if _ours(r) and r.get("name") != ROUTE_PREFIX + name]
    theirs = [dict(r) for r in http if not _ours(r)]
    if route is not None:
        ours.append(dict(route))
    return ours + theirs


def without_our_routes(http: Sequence[Mapping[str, Any]]) -> Routes:
    return [dict(r) for r in http if not _ours(r)]


def drift_of(http: Sequence[Mapping[str, Any]], target: Target, expected: ExpectedRouting | None) -> tuple[Drift, ...]:
    """The managed parts of ``http`` that differ from what the setters would write for ``expected``."""
    if expected is None:
        return ()
    wanted = without_our_routes(set_weights(http, target, expected.canary_weight))
    headers = {name: header_route(http, target, name, match) for name, match in expected.header_routes}
    mirrors = {name: mirror_route(http, target, name, match, pct) for name, match, pct in expected.mirror_routes}
    live = {str(r.get("name"))[len(ROUTE_PREFIX) :]: dict(r) for r in http if _ours(r)}
    live_mirrors = {n: r for n, r in live.items() if n in mirrors or (n not in headers and "mirror" in r)}
    live_headers = {n: r for n, r in live.items() if n not in live_mirrors}
    weights: tuple[Drift, ...] = ()
    missing = missing_split(http, target)
    if missing is not None:
        weights = (Drift(DriftKind.WEIGHT, expected=expected.describe_weight(), found=missing),)
    elif read_canary_weight(http, target) is None:
        split_routes = [route.get("route") for route in http if not _ours(route) and _splits(route, target)]
        weights = (
            Drift(
                DriftKind.WEIGHT, expected=expected.describe_weight(), found=f"unreadable weights {show(split_routes)}"
            ),
        )
    elif without_our_routes(http) != wanted:
        found, want = read_canary_weight(http, target), read_canary_weight(wanted, target)
        weights = weight_drift(expected, f"canary weight {found}", f"canary weight {want}")
    return (
        *weights,
        *route_drift(DriftKind.HEADER_ROUTE, headers, live_headers, expected.unknown_routes),
        *route_drift(DriftKind.MIRROR_ROUTE, mirrors, live_mirrors, expected.unknown_routes),
    )


# --- the adapter -----------------------------------------------------------------------------------------------


class IstioRouter:
    """Implements `headway.routers.base.TrafficRouter` on a VirtualService through `BlockingKube`."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def _read(self, target: Target) -> tuple[dict[str, Any], Routes]:
        service = self._kube.get(VIRTUAL_SERVICES, target.name, target.namespace)
        if service is None:
            raise PermanentError(f"VirtualService {target.namespace}/{target.name} not found")
        return service, list((service.get("spec") or {}).get("http") or [])

    def _write(self, target: Target, service: dict[str, Any], http: Routes) -> None:
        current = (service.get("spec") or {}).get("http") or []
        if http == current:
            return
        meta = service.get("metadata") or {}
        patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"http": http}}
        if ORIGINAL_ANNOTATION not in (meta.get("annotations") or {}):
            patch["metadata"]["annotations"] = {ORIGINAL_ANNOTATION: json.dumps(without_our_routes(current))}
        self._kube.patch(VIRTUAL_SERVICES, target.name, target.namespace, patch)

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        target = target_of(rollout)
        service, http = self._read(target)
        missing = missing_split(http, target)
        if missing is not None:
            raise PermanentError(missing)
        self._write(target, service, set_weights(http, target, canary_weight))

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        target = target_of(rollout)
        service, http = self._read(target)
        route = header_route(http, target, name, match) if match is not None else None
        self._write(target, service, put_route(http, route, name))

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        target = target_of(rollout)
        service, http = self._read(target)
        route = mirror_route(http, target, name, match, percentage) if match is not None else None
        self._write(target, service, put_route(http, route, name))

    def remove_managed_routes(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        service, http = self._read(target)
        self._write(target, service, without_our_routes(http))

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        target = target_of(rollout)
        _, http = self._read(target)
        weight = read_canary_weight(http, target)
        # The object is all there is to read back; a weight that was set and cannot be read from it is refuted.
        verified = False if weight is None and expected is not None else Verification.NOT_IMPLEMENTED.as_bool()
        return RouterState(weight, verified, drift=drift_of(http, target, expected))

    def restore(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        service, _ = self._read(target)
        meta = service.get("metadata") or {}
        saved = (meta.get("annotations") or {}).get(ORIGINAL_ANNOTATION)
        if saved is None:
            return
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {ORIGINAL_ANNOTATION: None}},
            "spec": {"http": json.loads(saved)},
        }
        self._kube.patch(VIRTUAL_SERVICES, target.name, target.namespace, patch)
