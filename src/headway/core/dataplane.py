"""The data plane is verified, not assumed: what the router should be doing, and what to do when it is not.

A weight written once is not a weight in force forever: someone may edit the route (an admin API call, a
``kubectl edit``, a GitOps sync), or the data plane may restart and come back without it. Argo re-asserts its
routes on every reconcile and says nothing; Headway reads them back every pass and says what changed.

`expected_routing` is what the status says Headway set (the weight of the last SetWeight, and the header and
mirror routes of the steps passed so far); the shell hands it to the router, whose read-back lists every part
that differs (`RouterState.drift`). `verify` runs first in every decision: it reports the differences in a
``TrafficDrift`` event naming each one and the assumed cause (the data plane restarted, or someone edited it),
sets the managed parts again, and keeps the rollout from being reported Healthy until a later read-back shows the
stable revision routed to ready backends by a router that verifies. Backends (embedded mode) are not the core's
to set: the runtime keeps them equal to the ready replicas; here they only count as drift and block health.
"""

from __future__ import annotations

from dataclasses import dataclass

from headway.core.actions import SetHeaderRoute, SetMirrorRoute, SetWeight
from headway.core.decision import EventType
from headway.core.observation import Drift, DriftKind
from headway.core.passes import Pass
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch
from headway.spec.status import RolloutStatus

TRAFFIC_DRIFT = "TrafficDrift"
ROUTER_RESTARTED = "TrafficRouterRestarted"
RECHECK_SECONDS = 1.0
"""How soon to read the routing back after a drift was found (the repair is confirmed by a later read)."""
UNVERIFIED_RECHECK_SECONDS = 5.0
"""How soon to look again while the router does not confirm the routing."""


@dataclass(frozen=True)
class ExpectedRouting:
    """The routing the status says Headway set: what each router's setters wrote, in the core's terms."""

    canary_weight: int
    canary_hash: str | None
    stable_hash: str | None
    header_routes: tuple[tuple[str, tuple[HeaderRoutingMatch, ...]], ...] = ()
    mirror_routes: tuple[tuple[str, tuple[RouteMatch, ...], int], ...] = ()
    unknown_routes: frozenset[str] = frozenset()
    """Routes the status names whose steps the spec no longer has: their content cannot be compared."""

    def header_route(self, name: str) -> tuple[HeaderRoutingMatch, ...] | None:
        return next((match for route, match in self.header_routes if route == name), None)

    def mirror_route(self, name: str) -> tuple[tuple[RouteMatch, ...], int] | None:
        return next(((match, pct) for route, match, pct in self.mirror_routes if route == name), None)

    def describe_weight(self) -> str:
        canary = self.canary_hash if self.canary_hash != self.stable_hash else None
        if canary is None:
            return f"all traffic to {self.stable_hash or 'stable'}"
        return f"{self.canary_weight} to canary {canary}, the rest to stable {self.stable_hash or ''}".rstrip()


def expected_routing(rollout: Rollout, status: RolloutStatus) -> ExpectedRouting | None:
    """What a traffic-routed canary's router should be doing per ``status``; None when nothing was set yet (or
    the rollout has no router to compare)."""
    canary = rollout.spec.strategy.canary
    weights = status.canary.weights
    if canary is None or canary.traffic_routing is None or weights is None:
        return None
    passed = canary.steps[: min(status.current_step_index or 0, len(canary.steps))]
    headers: dict[str, tuple[HeaderRoutingMatch, ...]] = {}
    mirrors: dict[str, tuple[tuple[RouteMatch, ...], int]] = {}
    for step in passed:
        if step.set_header_route is not None:
            route = step.set_header_route
            headers.pop(route.name, None)
            if route.match:
                headers[route.name] = tuple(route.match)
        if step.set_mirror_route is not None:
            mirror = step.set_mirror_route
            mirrors.pop(mirror.name, None)
            if mirror.match:
                percentage = mirror.percentage if mirror.percentage is not None else 100
                mirrors[mirror.name] = (tuple(mirror.match), percentage)
    named_headers, named_mirrors = status.canary.header_routes, status.canary.mirror_routes
    unknown = {name for name in named_headers if name not in headers}
    unknown |= {name for name in named_mirrors if name not in mirrors}
    return ExpectedRouting(
        canary_weight=weights.canary.weight,
        canary_hash=weights.canary.pod_template_hash or None,
        stable_hash=weights.stable.pod_template_hash or None,
        header_routes=tuple((name, headers[name]) for name in named_headers if name in headers),
        mirror_routes=tuple((name, *mirrors[name]) for name in named_mirrors if name in mirrors),
        unknown_routes=frozenset(unknown),
    )


def verify(p: Pass) -> None:
    """Report and repair drift, and hold back Healthy until the routing is read back as it should be.

    Runs first in `decide`, on the status the pass started from (the one the shell compared the read-back
    against), so the repairs come before anything the strategy does in the same pass.
    """
    state = p.obs.router
    if state.restarted:
        p.event(EventType.WARNING, ROUTER_RESTARTED, f"{state.restarted}; reading back what it routes")
    drift = (*state.drift, *_backend_drift(p))
    if drift:
        cause = (
            f"the data plane was replaced ({state.restarted}) without all of it"
            if state.restarted
            else "changed outside Headway (no restart of the data plane was seen: an edit)"
        )
        what = "; ".join(item.describe() for item in drift)
        p.event(
            EventType.WARNING,
            TRAFFIC_DRIFT,
            f"Traffic routing of {p.rollout.name} differs from what Headway set: {what}. Assumed cause: {cause}. "
            "Setting it again.",
        )
        _repair(p, drift)
        p.wait(f"traffic routing drifted ({what}); repairing")
        p.wake_after(RECHECK_SECONDS)
    stable = _stable_served(p)
    if state.backends is not None and stable is not None and state.backends.get(stable, 0) == 0:
        p.wait(f"the stable revision {stable} has no ready backends routed to it")
        p.wake_after(RECHECK_SECONDS)
    if state.verified is False:
        p.wait("the traffic router does not confirm the routing (read-back not verified)")
        p.wake_after(UNVERIFIED_RECHECK_SECONDS)


def _repair(p: Pass, drift: tuple[Drift, ...]) -> None:
    """Set again what the router's setters own; backends are the runtime's to resync."""
    expected = expected_routing(p.rollout, p.status)
    if expected is None:
        return
    if any(item.kind == DriftKind.WEIGHT for item in drift):
        p.act(
            SetWeight(
                canary_weight=expected.canary_weight, canary_hash=expected.canary_hash, stable_hash=expected.stable_hash
            )
        )
    for item in drift:
        if item.kind == DriftKind.HEADER_ROUTE and item.name not in expected.unknown_routes:
            p.act(SetHeaderRoute(name=item.name, match=expected.header_route(item.name)))
        elif item.kind == DriftKind.MIRROR_ROUTE and item.name not in expected.unknown_routes:
            mirror = expected.mirror_route(item.name)
            match, percentage = mirror if mirror is not None else (None, 100)
            p.act(SetMirrorRoute(name=item.name, match=match, percentage=percentage))


def _served(p: Pass) -> list[str]:
    """The revisions the routing sends user traffic to: stable, and the canary while it has a weight."""
    weights = p.status.canary.weights
    if p.spec.strategy.canary is not None and weights is not None:
        served = [d.pod_template_hash for d in (weights.stable, weights.canary) if d.weight > 0 and d.pod_template_hash]
        return list(dict.fromkeys(served))
    stable = _stable_served(p)
    return [stable] if stable is not None else []


def _stable_served(p: Pass) -> str | None:
    """The revision the stable share goes to (blue/green: the active one); None while stable gets no share."""
    if p.spec.strategy.blue_green is not None:
        return p.status.blue_green.active_selector or p.status.stable_rs
    weights = p.status.canary.weights
    if weights is None:
        return p.status.stable_rs
    return (weights.stable.pod_template_hash or p.status.stable_rs) if weights.stable.weight > 0 else None


def _backend_drift(p: Pass) -> tuple[Drift, ...]:
    """Revisions that get traffic and have ready replicas, yet no backend routed: the case-2 outage."""
    backends = p.obs.router.backends
    if backends is None:
        return ()
    found = []
    for pod_hash in _served(p):
        revision = p.revision(pod_hash)
        if revision is not None and revision.ready > 0 and backends.get(pod_hash, 0) == 0:
            expected = f"its {revision.ready} ready replica(s)"
            found.append(Drift(DriftKind.BACKENDS, pod_hash, expected=expected, found="no backend routed"))
    return tuple(found)
