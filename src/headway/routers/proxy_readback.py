"""Reading the embedded proxy's routing back: its ``GET /state`` document against what Headway set.

Pure functions over the admin API's JSON (the same wire form `ProxyRouter`'s setters send), so the comparison is
tested without a proxy. The proxy lowercases header names; both sides are normalised the same way before they
are compared, so only a real difference is drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import Drift, DriftKind
from headway.routers.drift import route_drift, weight_drift
from headway.spec.rollout import HeaderRoutingMatch, RouteMatch


def written_split(canary_weight: int, canary_hash: str | None, stable_hash: str | None) -> dict[str, Any]:
    """What `ProxyRouter.set_weight` writes: stable and canary revisions and their weights."""
    canary = canary_hash if canary_hash != stable_hash else None
    weights: dict[str, int] = {}
    if stable_hash:
        weights[stable_hash] = 100 - canary_weight if canary else 100
    if canary:
        weights[canary] = canary_weight
    return {"stable": stable_hash, "canary": canary, "weights": weights}


def canary_weight(state: Mapping[str, Any]) -> int:
    """The canary's share of the stable+canary weights, in percent (as `ProxyRouter.read_state` reports it)."""
    weights: Mapping[str, int] = state.get("weights") or {}
    canary, stable = state.get("canary"), state.get("stable")
    canary_part = weights.get(canary, 0) if canary else 0
    total = canary_part + (weights.get(stable, 0) if stable else 0)
    return round(100 * canary_part / total) if total else 0


def live_split(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"stable": state.get("stable"), "canary": state.get("canary"), "weights": dict(state.get("weights") or {})}


def routed_backends(state: Mapping[str, Any]) -> dict[str, int]:
    """Backends that take new requests (not draining), per revision."""
    counts: dict[str, int] = {}
    for revision, items in (state.get("backends") or {}).items():
        counts[str(revision)] = sum(
            1 for item in items or () if isinstance(item, str) or not (item or {}).get("draining", False)
        )
    return counts


def drift_of(state: Mapping[str, Any], expected: ExpectedRouting | None) -> tuple[Drift, ...]:
    """Every managed part of the proxy's state that differs from ``expected``."""
    if expected is None:
        return ()
    wanted = written_split(expected.canary_weight, expected.canary_hash, expected.stable_hash)
    headers = {name: _header_match([m.wire() for m in match]) for name, match in expected.header_routes}
    mirrors = {name: _mirror(_wires(match), pct) for name, match, pct in expected.mirror_routes}
    live_headers = {str(r.get("name")): _header_match(r.get("match") or []) for r in state.get("headerRoutes") or []}
    live_mirrors = {
        str(r.get("name")): _mirror(r.get("match") or [], r.get("percentage", 100))
        for r in state.get("mirrorRoutes") or []
    }
    return (
        *weight_drift(expected, live_split(state), wanted),
        *route_drift(DriftKind.HEADER_ROUTE, headers, live_headers, expected.unknown_routes),
        *route_drift(DriftKind.MIRROR_ROUTE, mirrors, live_mirrors, expected.unknown_routes),
    )


def _wires(match: tuple[RouteMatch, ...] | tuple[HeaderRoutingMatch, ...]) -> list[dict[str, Any]]:
    return [m.wire() for m in match]


def _header_match(items: list[Any]) -> list[Any]:
    return [
        {**item, "headerName": str(item.get("headerName", "")).lower()} if isinstance(item, dict) else item
        for item in items
    ]


def _mirror(items: list[Any], percentage: object) -> dict[str, Any]:
    normalised = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("headers"), dict):
            item = {**item, "headers": {str(k).lower(): v for k, v in item["headers"].items()}}
        normalised.append(item)
    return {"match": normalised, "percentage": percentage}
