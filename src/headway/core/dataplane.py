"""The data plane is verified, not assumed: what the router should be doing, and what to do when it is not.

A weight written once is not a weight in force forever: someone may edit the route (an admin API call, a
``kubectl edit``, a GitOps sync), or the data plane may restart and come back without it. Argo re-asserts its
routes on every reconcile and says nothing; Headway reads them back every pass and says what changed.

`expected_routing` is what the status says Headway set (the weight of the last SetWeight, and the header and
mirror routes of the steps passed so far); the shell hands it to the router, whose read-back lists every part
that differs (`RouterState.drift`). `verify` runs first in every decision and sets those parts again; `conclude`
runs last and reports them in a ``TrafficDrift`` event naming each one and the assumed cause (the data plane
restarted, or someone edited it). The rollout is not Healthy until a read-back shows no drift and the stable
revision routed to ready backends by a router that does not deny it. Backends (embedded mode) are not the
core's to set: the runtime keeps them equal to the ready replicas and reports what it repairs; here a stable
revision without any only holds back Healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

from headway.core.actions import Action, SetHeaderRoute, SetMirrorRoute, SetWeight
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
        return describe_split(self.canary_weight, self.canary_hash, self.stable_hash)


def describe_split(canary_weight: int, canary_hash: str | None, stable_hash: str | None) -> str:
    """A weight split in words, as drift messages show what was expected and what was found."""
    canary = canary_hash if canary_hash != stable_hash else None
    if canary is None:
        return f"all traffic to {stable_hash or 'stable'}"
    return f"{canary_weight} to canary {canary}, the rest to stable {stable_hash or ''}".rstrip()


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
    against), so the repairs come before anything the strategy does in the same pass; `conclude` runs last.
    """
    state = p.obs.router
    if state.restarted:
        p.event(EventType.WARNING, ROUTER_RESTARTED, f"{state.restarted}; reading back what it routes")
    if state.drift:
        what = "; ".join(item.describe() for item in state.drift)
        p.repairs.extend(_repairs(p, state.drift))
        for action in p.repairs:
            p.act(action)
        p.wait(f"traffic routing drifted ({what}); repairing")
        p.wake_after(RECHECK_SECONDS)
    stable = _stable_served(p)
    if state.backends is not None and stable is not None and state.backends.get(stable, 0) == 0:
        # Backends are the runtime's to keep (embedded mode: the ready replicas); it reports what it repairs.
        p.wait(f"the stable revision {stable} has no ready backends routed to it")
        p.wake_after(RECHECK_SECONDS)
    if state.stable_hash is not None and stable is not None and state.stable_hash != stable:
        # Blue/green in embedded mode: the runtime points the proxy at the active revision after the switch.
        p.wait(f"the traffic router sends the stable share to {state.stable_hash}, not to {stable}")
        p.wake_after(RECHECK_SECONDS)
    if state.verified is False:
        p.wait("the traffic router does not confirm the routing (read-back not verified)")
        p.wake_after(UNVERIFIED_RECHECK_SECONDS)


def conclude(p: Pass) -> None:
    """Runs last in `decide`: name the drift, and drop a repair the strategy's own actions replace.

    A part this pass sets anyway (a new weight, a step's route) needs no repair first (that would flip traffic
    back for a moment), and its difference may be the echo of a pass that failed after writing it (the status
    of a failed pass is not saved), so the event says so instead of blaming an edit.
    """
    state = p.obs.router
    if not state.drift:
        return
    later = [action for action in p.actions if not any(action is repair for repair in p.repairs)]
    superseded = [repair for repair in p.repairs if any(_same_target(repair, action) for action in later)]
    p.actions = [action for action in p.actions if not any(action is repair for repair in superseded)]
    if state.restarted:
        cause = f"the data plane was replaced ({state.restarted}) without all of it"
    elif superseded:
        cause = "an edit outside Headway, or an earlier pass that failed after writing it (this pass sets it anew)"
    else:
        cause = "changed outside Headway (no restart of the data plane was seen: an edit)"
    what = "; ".join(item.describe() for item in state.drift)
    p.event(
        EventType.WARNING,
        TRAFFIC_DRIFT,
        f"Traffic routing of {p.rollout.name} differs from what Headway set: {what}. Assumed cause: {cause}. "
        "Setting it again.",
    )


def _same_target(repair: Action, action: Action) -> bool:
    if isinstance(repair, SetWeight):
        return isinstance(action, SetWeight)
    if isinstance(repair, SetHeaderRoute):
        return isinstance(action, SetHeaderRoute) and action.name == repair.name
    if isinstance(repair, SetMirrorRoute):
        return isinstance(action, SetMirrorRoute) and action.name == repair.name
    return False


def _repairs(p: Pass, drift: tuple[Drift, ...]) -> list[Action]:
    """What to set again: the managed parts that differ, as the status says they were set."""
    expected = expected_routing(p.rollout, p.status)
    if expected is None:
        return []
    repairs: list[Action] = []
    if any(item.kind == DriftKind.WEIGHT for item in drift):
        repairs.append(
            SetWeight(
                canary_weight=expected.canary_weight, canary_hash=expected.canary_hash, stable_hash=expected.stable_hash
            )
        )
    for item in drift:
        if item.kind == DriftKind.HEADER_ROUTE and item.name not in expected.unknown_routes:
            repairs.append(SetHeaderRoute(name=item.name, match=expected.header_route(item.name)))
        elif item.kind == DriftKind.MIRROR_ROUTE and item.name not in expected.unknown_routes:
            mirror = expected.mirror_route(item.name)
            match, percentage = mirror if mirror is not None else (None, 100)
            repairs.append(SetMirrorRoute(name=item.name, match=match, percentage=percentage))
    return repairs


def _stable_served(p: Pass) -> str | None:
    """The revision the stable share goes to (blue/green: the active one); None while stable gets no share."""
    if p.spec.strategy.blue_green is not None:
        return p.status.blue_green.active_selector or p.status.stable_rs
    weights = p.status.canary.weights
    if weights is None:
        return p.status.stable_rs
    return (weights.stable.pod_template_hash or p.status.stable_rs) if weights.stable.weight > 0 else None
