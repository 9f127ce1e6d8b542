"""Gateway API traffic router: weights on an HTTPRoute's backendRefs, header and mirror rules, read back, undone.

Configured like Argo's Gateway API plugin (``trafficRouting.plugins["argoproj-labs/gatewayAPI"]`` with
``httpRoute`` and optional ``namespace``). The route's rules that point at the stable and canary Services get
their ``weight``s set; header routes (setHeaderRoute) and mirror routes (setMirrorRoute, a ``RequestMirror``
filter) are rules Headway adds at the front, named ``headway-<name>`` so they are found and removed again.

The pure part (`desired_rules`, `read_canary_weight`, `verification`) computes objects from objects and is tested
table-driven; `GatewayApiRouter` is a thin adapter: read, compute, write only if different, conditional on the
resourceVersion read (a user's concurrent edit makes the write fail with 409 and the next pass recomputes from
theirs). Before the first change, the user's rules are saved in an annotation, and `restore` puts them back.
Before shifting traffic to the canary, the route's status must not report Accepted or ResolvedRefs as False:
shifting into a route the gateway refused would hide the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError, TemporaryError
from headway.core.observation import Drift, DriftKind, RouterState
from headway.kube.client import HTTP_ROUTES, BlockingKube
from headway.routers.base import Verification
from headway.routers.drift import route_drift, show, weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch, StringMatch

PLUGIN = "argoproj-labs/gatewayAPI"
ORIGINAL_ANNOTATION = "headway.dev/original-rules"
RULE_PREFIX = "headway-"
Rules = list[dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """Which HTTPRoute and Services a rollout shifts between."""

    route: str
    namespace: str
    canary_service: str
    stable_service: str


def target_of(rollout: Rollout) -> Target:
    """Read the plugin config and the canary/stable Services; missing pieces name the field."""
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary else None
    config = (routing.plugins or {}).get(PLUGIN) if routing else None
    path = f"spec.strategy.canary.trafficRouting.plugins[{PLUGIN!r}]"
    if canary is None or not isinstance(config, Mapping):
        raise PermanentError(f"{path}: required for the Gateway API router")
    route = config.get("httpRoute")
    if not isinstance(route, str) or not route:
        raise PermanentError(f"{path}.httpRoute: the name of the HTTPRoute is required")
    if not canary.canary_service or not canary.stable_service:
        raise PermanentError("spec.strategy.canary.canaryService and stableService are required with trafficRouting")
    namespace = config.get("namespace") or rollout.metadata.namespace
    return Target(route, str(namespace), canary.canary_service, canary.stable_service)


# --- pure: objects in, objects out -----------------------------------------------------------------------------


def _is_ours(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("name", "")).startswith(RULE_PREFIX)


def _refs(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = rule.get("backendRefs") or []
    return refs


def _splits(rule: Mapping[str, Any], target: Target) -> bool:
    """A user rule that routes to both Services: the only kind whose weights split traffic between them."""
    names = {ref.get("name") for ref in _refs(rule) if isinstance(ref, Mapping)}
    return not _is_ours(rule) and target.canary_service in names and target.stable_service in names


def missing_split(rules: Sequence[Mapping[str, Any]], target: Target) -> str | None:
    """Why no rule can carry the split (None: at least one can), naming what each rule lacks.

    Weighting a rule that holds only one of the Services changes nothing (or, at weight 0, answers 500 to all of
    its requests), so a route without a rule holding both is an error to report, never a weight silently skipped.
    """
    if any(_splits(rule, target) for rule in rules):
        return None
    wanted = (target.stable_service, target.canary_service)
    found = []
    for index, rule in enumerate(rules):
        if _is_ours(rule):
            continue
        names = {ref.get("name") for ref in _refs(rule) if isinstance(ref, Mapping)}
        label = f"rules[{index}]" + (f" ({rule['name']})" if rule.get("name") else "")
        found.append(f"{label} lacks {' and '.join(n for n in wanted if n not in names)}")
    detail = "; ".join(found) if found else "it has no rules"
    return (
        f"HTTPRoute {target.namespace}/{target.route}: no rule has backendRefs to both {target.stable_service} "
        f"and {target.canary_service} ({detail})"
    )


def set_weights(rules: Sequence[Mapping[str, Any]], target: Target, canary_weight: int) -> Rules:
    """The rules with the canary/stable backendRefs of every rule holding both weighted ``canary_weight``/
    ``100 - canary_weight``; other rules (ours, or the user's with one of the Services only) are left alone."""
    result: Rules = []
    for rule in rules:
        if not _splits(rule, target):
            result.append(dict(rule))
            continue
        refs = [dict(ref) for ref in _refs(rule)]
        for ref in refs:
            if ref.get("name") == target.canary_service:
                ref["weight"] = canary_weight
            elif ref.get("name") == target.stable_service:
                ref["weight"] = 100 - canary_weight
        result.append({**rule, "backendRefs": refs})
    return result


def _string_match(match: StringMatch) -> tuple[str, str]:
    if match.exact is not None:
        return "Exact", match.exact
    if match.regex is not None:
        return "RegularExpression", match.regex
    return "RegularExpression", f"^{_escape(match.prefix or '')}.*"


def _path_match(path: StringMatch) -> dict[str, str]:
    if path.prefix is not None:
        return {"type": "PathPrefix", "value": path.prefix}
    if path.exact is not None:
        return {"type": "Exact", "value": path.exact}
    return {"type": "RegularExpression", "value": path.regex or ""}


def _escape(text: str) -> str:
    return "".join(f"\\{c}" if c in ".^$*+?()[]{}|\\" else c for c in text)


def _stable_port(rules: Sequence[Mapping[str, Any]], target: Target) -> dict[str, Any]:
    for rule in rules:
        for ref in _refs(rule):
            if ref.get("name") == target.stable_service and "port" in ref:
                return {"port": ref["port"]}
    return {}


def header_rule(
    rules: Sequence[Mapping[str, Any]], target: Target, name: str, match: Sequence[HeaderRoutingMatch]
) -> dict[str, Any]:
    """A rule sending requests with all of ``match``'s headers to the canary only."""
    headers = []
    for header in match:
        kind, value = _string_match(header.header_value)
        headers.append({"name": header.header_name, "type": kind, "value": value})
    return {
        "name": RULE_PREFIX + name,
        "matches": [{"headers": headers}],
        "backendRefs": [{"name": target.canary_service, **_stable_port(rules, target), "weight": 100}],
    }


def mirror_rule(
    rules: Sequence[Mapping[str, Any]], target: Target, name: str, match: Sequence[RouteMatch], percentage: int
) -> dict[str, Any]:
    """A rule serving matching requests from stable and copying ``percentage`` of them to the canary."""
    matches = []
    for route_match in match:
        entry: dict[str, Any] = {}
        if route_match.path is not None:
            entry["path"] = _path_match(route_match.path)
        if route_match.method is not None:
            entry["method"] = (route_match.method.exact or "").upper()
        if route_match.headers:
            entry["headers"] = [
                {"name": key, "type": _string_match(value)[0], "value": _string_match(value)[1]}
                for key, value in route_match.headers.items()
            ]
        matches.append(entry)
    port = _stable_port(rules, target)
    return {
        "name": RULE_PREFIX + name,
        "matches": matches,
        "filters": [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": target.canary_service, **port}, "percent": percentage},
            }
        ],
        "backendRefs": [{"name": target.stable_service, **port, "weight": 100}],
    }


def put_rule(rules: Sequence[Mapping[str, Any]], rule: Mapping[str, Any] | None, name: str) -> Rules:
    """Our rule ``name`` replaced by ``rule`` (None: removed); our rules stay in front, in insertion order."""
    ours = [dict(r) for r in rules if _is_ours(r) and r.get("name") != RULE_PREFIX + name]
    theirs = [dict(r) for r in rules if not _is_ours(r)]
    if rule is not None:
        ours.append(dict(rule))
    return ours + theirs


def without_our_rules(rules: Sequence[Mapping[str, Any]]) -> Rules:
    return [dict(r) for r in rules if not _is_ours(r)]


def _weight(ref: Mapping[str, Any]) -> int | None:
    """A backendRef's weight (1 when absent, as Gateway API defaults it); None when it is not a whole number."""
    value = ref.get("weight", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_canary_weight(rules: Sequence[Mapping[str, Any]], target: Target) -> int | None:
    """The canary weight of the first user rule that routes to both Services (None: no such rule, or its
    weights are not whole numbers: nothing that can be read back as a split)."""
    for rule in rules:
        if not _splits(rule, target):
            continue
        weights = {ref.get("name"): _weight(ref) for ref in _refs(rule)}
        canary, stable = weights[target.canary_service], weights[target.stable_service]
        if canary is None or stable is None:
            return None
        total = canary + stable
        return 0 if total == 0 else round(100 * canary / total)
    return None


def refusals(route: Mapping[str, Any]) -> list[str]:
    """Why the gateway refuses the route: every Accepted/ResolvedRefs condition that is False."""
    reasons = []
    for parent in (route.get("status") or {}).get("parents") or []:
        for condition in parent.get("conditions") or []:
            if condition.get("type") in ("Accepted", "ResolvedRefs") and condition.get("status") == "False":
                reasons.append(f"{condition['type']}: {condition.get('reason', '')} {condition.get('message', '')}")
    return reasons


def verification(route: Mapping[str, Any]) -> Verification:
    """Verified when every parent Gateway accepted this generation and resolved its refs; NOT_IMPLEMENTED when
    no gateway controller reports status at all (nothing to read back from)."""
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return Verification.NOT_IMPLEMENTED
    generation = (route.get("metadata") or {}).get("generation")
    for parent in parents:
        conditions = {c.get("type"): c for c in parent.get("conditions") or []}
        for kind in ("Accepted", "ResolvedRefs"):
            condition = conditions.get(kind)
            if condition is None or condition.get("status") != "True":
                return Verification.NOT_VERIFIED
            observed = condition.get("observedGeneration")
            if generation is not None and observed is not None and int(observed) < int(generation):
                return Verification.NOT_VERIFIED
    return Verification.VERIFIED


def drift_of(rules: Sequence[Mapping[str, Any]], target: Target, expected: ExpectedRouting | None) -> tuple[Drift, ...]:
    """The managed parts of ``rules`` that differ from what the setters would write for ``expected``."""
    if expected is None:
        return ()
    wanted = without_our_rules(set_weights(rules, target, expected.canary_weight))
    headers = {name: header_rule(rules, target, name, match) for name, match in expected.header_routes}
    mirrors = {name: mirror_rule(rules, target, name, match, pct) for name, match, pct in expected.mirror_routes}
    live = {str(r.get("name"))[len(RULE_PREFIX) :]: dict(r) for r in rules if _is_ours(r)}
    live_mirrors = {n: r for n, r in live.items() if n in mirrors or (n not in headers and _mirrors(r))}
    live_headers = {n: r for n, r in live.items() if n not in live_mirrors}
    weights: tuple[Drift, ...] = ()
    missing = missing_split(rules, target)
    if missing is not None:
        weights = (Drift(DriftKind.WEIGHT, expected=expected.describe_weight(), found=missing),)
    elif read_canary_weight(rules, target) is None:
        split_refs = [_refs(rule) for rule in rules if _splits(rule, target)]
        weights = (
            Drift(
                DriftKind.WEIGHT, expected=expected.describe_weight(), found=f"unreadable weights {show(split_refs)}"
            ),
        )
    elif without_our_rules(rules) != wanted:
        found, want = read_canary_weight(rules, target), read_canary_weight(wanted, target)
        weights = weight_drift(expected, f"canary weight {found}", f"canary weight {want}")
    return (
        *weights,
        *route_drift(DriftKind.HEADER_ROUTE, headers, live_headers, expected.unknown_routes),
        *route_drift(DriftKind.MIRROR_ROUTE, mirrors, live_mirrors, expected.unknown_routes),
    )


def _mirrors(rule: Mapping[str, Any]) -> bool:
    return any(item.get("type") == "RequestMirror" for item in rule.get("filters") or [])


def _verified(route: Mapping[str, Any], weight: int | None, expected: ExpectedRouting | None) -> bool | None:
    """The gateway's verification, but never verified when a weight was set and no split can be read back: an
    accepted route that sends nothing to the canary does not confirm a canary weight."""
    return False if weight is None and expected is not None else verification(route).as_bool()


# --- the adapter -----------------------------------------------------------------------------------------------


class GatewayApiRouter:
    """Implements `headway.routers.base.TrafficRouter` on HTTPRoutes through `BlockingKube`."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def _route(self, target: Target) -> dict[str, Any]:
        route = self._kube.get(HTTP_ROUTES, target.route, target.namespace)
        if route is None:
            raise PermanentError(f"HTTPRoute {target.namespace}/{target.route} not found")
        return route

    def _write(self, target: Target, route: dict[str, Any], rules: Rules) -> None:
        current: Rules = (route.get("spec") or {}).get("rules") or []
        if rules == current:
            return
        meta = route.get("metadata") or {}
        annotations = dict(meta.get("annotations") or {})
        patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"rules": rules}}
        if ORIGINAL_ANNOTATION not in annotations:
            patch["metadata"]["annotations"] = {ORIGINAL_ANNOTATION: json.dumps(without_our_rules(current))}
        self._kube.patch(HTTP_ROUTES, target.route, target.namespace, patch)

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        target = target_of(rollout)
        route = self._route(target)
        refused = refusals(route)
        if refused and canary_weight > 0:
            raise TemporaryError(f"HTTPRoute {target.route} is refused by its gateway ({'; '.join(refused)})", delay=15)
        rules = (route.get("spec") or {}).get("rules") or []
        missing = missing_split(rules, target)
        if missing is not None:
            raise PermanentError(missing)
        self._write(target, route, set_weights(rules, target, canary_weight))

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        target = target_of(rollout)
        route = self._route(target)
        rules = (route.get("spec") or {}).get("rules") or []
        rule = header_rule(rules, target, name, match) if match is not None else None
        self._write(target, route, put_rule(rules, rule, name))

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        target = target_of(rollout)
        route = self._route(target)
        rules = (route.get("spec") or {}).get("rules") or []
        rule = mirror_rule(rules, target, name, match, percentage) if match is not None else None
        self._write(target, route, put_rule(rules, rule, name))

    def remove_managed_routes(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        route = self._route(target)
        self._write(target, route, without_our_rules((route.get("spec") or {}).get("rules") or []))

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        target = target_of(rollout)
        route = self._route(target)
        rules = (route.get("spec") or {}).get("rules") or []
        weight = read_canary_weight(rules, target)
        return RouterState(
            canary_weight=weight,
            verified=_verified(route, weight, expected),
            drift=drift_of(rules, target, expected),
        )

    def restore(self, rollout: Rollout) -> None:
        target = target_of(rollout)
        route = self._route(target)
        meta = route.get("metadata") or {}
        saved = (meta.get("annotations") or {}).get(ORIGINAL_ANNOTATION)
        if saved is None:
            return
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {ORIGINAL_ANNOTATION: None}},
            "spec": {"rules": json.loads(saved)},
        }
        self._kube.patch(HTTP_ROUTES, target.route, target.namespace, patch)
