"""An in-memory traffic router in virtual time: records what was set, and can lag or never verify.

Real data planes apply a weight some time after the write (an ALB target group, an Envoy config push). The fake
models that with ``lag_seconds``: a write becomes effective that long after it was made, in virtual time moved by
`advance`. ``fail_verification`` models a data plane that never confirms, and ``verifies=False`` a router that
cannot read back at all (verification NotImplemented). `fail_next` makes the next call to a method raise, to test
how the engine handles adapter errors. `tamper` changes the routing behind the engine's back (an edit), `restart`
replaces the data plane (losing its routing unless told otherwise) and `set_backends` says how many backends each
revision is routed to, so drift detection and repair are testable in virtual time. The simulator's traffic model
reads `route` to split requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from headway.core.dataplane import ExpectedRouting, describe_split
from headway.core.observation import Drift, DriftKind, RouterState
from headway.routers.base import Verification
from headway.routers.drift import route_drift, weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch, rollout_key

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Where virtual time starts unless told otherwise (the same instant as the fake platform's)."""


@dataclass(frozen=True)
class Route:
    """What the data plane does for one rollout (the effective state, after any lag)."""

    canary_weight: int = 0
    canary_hash: str | None = None
    stable_hash: str | None = None
    header_routes: tuple[tuple[str, tuple[HeaderRoutingMatch, ...]], ...] = ()
    mirror_routes: tuple[tuple[str, tuple[RouteMatch, ...], int], ...] = ()


@dataclass(frozen=True)
class RouterCall:
    method: str
    rollout: str
    args: tuple[object, ...] = ()


@dataclass
class _State:
    desired: Route = field(default_factory=Route)
    effective: Route = field(default_factory=Route)
    pending: list[tuple[datetime, Route]] = field(default_factory=list)
    instance: int = 1
    seen: int | None = None
    backends: dict[str, int] | None = None


class FakeRouter:
    """Implements `headway.routers.base.TrafficRouter` in memory, in virtual time."""

    def __init__(
        self,
        *,
        lag_seconds: float = 0.0,
        verifies: bool = True,
        fail_verification: bool = False,
        now: datetime = EPOCH,
    ) -> None:
        self.lag_seconds = lag_seconds
        self.verifies = verifies
        self.fail_verification = fail_verification
        self.now = now
        self.calls: list[RouterCall] = []
        self._failures: dict[str, Exception] = {}
        self._states: dict[str, _State] = {}

    # --- control (not part of the Protocol) ----------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Move the clock to ``now`` and apply the writes whose lag has passed."""
        if now.tzinfo is None:
            raise ValueError(f"virtual time must be timezone-aware (UTC), got {now.isoformat()}")
        if now < self.now:
            raise ValueError(f"virtual time goes forward only: {now.isoformat()} < {self.now.isoformat()}")
        self.now = now
        for state in self._states.values():
            self._settle(state)

    def next_change_at(self) -> datetime | None:
        """When the next lagging write takes effect (None: nothing pending)."""
        return min((at for state in self._states.values() for at, _ in state.pending), default=None)

    def fail_next(self, method: str, error: Exception) -> None:
        """Make the next call to ``method`` raise ``error`` (once)."""
        self._failures[method] = error

    def route(self, rollout: Rollout | str) -> Route:
        """The effective routing of a rollout: what requests experience now."""
        state = self._states.get(rollout_key(rollout))
        return state.effective if state else Route()

    def desired(self, rollout: Rollout | str) -> Route:
        """The last routing written, whether or not it is effective yet."""
        state = self._states.get(rollout_key(rollout))
        return state.desired if state else Route()

    def tamper(self, rollout: Rollout | str, change: Callable[[Route], Route]) -> None:
        """Change the routing at once, as someone else editing the data plane would (no call recorded)."""
        state = self._states.setdefault(rollout_key(rollout), _State())
        state.desired = state.effective = change(state.desired)
        state.pending.clear()

    def restart(self, rollout: Rollout | str, *, keep_routing: bool = False) -> None:
        """Replace the data plane instance; unless ``keep_routing``, it comes back with no routing at all."""
        state = self._states.setdefault(rollout_key(rollout), _State())
        state.instance += 1
        if not keep_routing:
            state.desired = state.effective = Route()
            state.pending.clear()

    def set_backends(self, rollout: Rollout | str, backends: dict[str, int] | None) -> None:
        """Backends routed per revision as `read_state` reports them (None: the router does not own backends)."""
        self._states.setdefault(rollout_key(rollout), _State()).backends = backends

    # --- the TrafficRouter Protocol ------------------------------------------------------------------------

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
        self._call("set_weight", rollout, canary_weight, canary_hash, stable_hash)
        self._write(
            rollout,
            lambda route: replace(route, canary_weight=canary_weight, canary_hash=canary_hash, stable_hash=stable_hash),
        )

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        self._call("set_header_route", rollout, name, match)

        def change(route: Route) -> Route:
            others = tuple(item for item in route.header_routes if item[0] != name)
            added = () if match is None else ((name, tuple(match)),)
            return replace(route, header_routes=others + added)

        self._write(rollout, change)

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        self._call("set_mirror_route", rollout, name, match, percentage)

        def change(route: Route) -> Route:
            others = tuple(item for item in route.mirror_routes if item[0] != name)
            added = () if match is None else ((name, tuple(match), percentage),)
            return replace(route, mirror_routes=others + added)

        self._write(rollout, change)

    def remove_managed_routes(self, rollout: Rollout) -> None:
        self._call("remove_managed_routes", rollout)
        self._write(rollout, lambda route: replace(route, header_routes=(), mirror_routes=()))

    def read_weight(self, rollout: Rollout) -> RouterState:
        self._raise_if_told("read_weight")
        if not self.verifies:
            return RouterState(canary_weight=None, verified=Verification.NOT_IMPLEMENTED.as_bool())
        return RouterState(
            canary_weight=self.route(rollout).canary_weight, verified=self.verification(rollout).as_bool()
        )

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        weight = self.read_weight(rollout)
        state = self._states.setdefault(rollout_key(rollout), _State())
        restarted = ""
        if state.seen is not None and state.seen != state.instance:
            restarted = f"the fake data plane was replaced (instance {state.seen} → {state.instance})"
        state.seen = state.instance
        return RouterState(
            canary_weight=weight.canary_weight,
            verified=weight.verified,
            drift=drift_of(state.desired, expected),
            backends=dict(state.backends) if state.backends is not None else None,
            restarted=restarted,
        )

    def restore(self, rollout: Rollout) -> None:
        self._call("restore", rollout)
        self._write(rollout, lambda _: Route())

    # --- helpers -------------------------------------------------------------------------------------------

    def verification(self, rollout: Rollout | str) -> Verification:
        if not self.verifies:
            return Verification.NOT_IMPLEMENTED
        state = self._states.get(rollout_key(rollout))
        settled = state is None or (not state.pending and state.effective == state.desired)
        return Verification.VERIFIED if settled and not self.fail_verification else Verification.NOT_VERIFIED

    def _call(self, method: str, rollout: Rollout, *args: object) -> None:
        self._raise_if_told(method)
        self.calls.append(RouterCall(method=method, rollout=rollout_key(rollout), args=args))

    def _raise_if_told(self, method: str) -> None:
        error = self._failures.pop(method, None)
        if error is not None:
            raise error

    def _write(self, rollout: Rollout, change: Callable[[Route], Route]) -> None:
        state = self._states.setdefault(rollout_key(rollout), _State())
        new = change(state.desired)
        if new == state.desired:
            return  # idempotent: writing what is already desired does not restart the lag
        state.desired = new
        state.pending.append((self.now + timedelta(seconds=self.lag_seconds), new))
        self._settle(state)

    def _settle(self, state: _State) -> None:
        due = [route for at, route in state.pending if at <= self.now]
        if due:
            state.effective = due[-1]
        state.pending = [(at, route) for at, route in state.pending if at > self.now]


def drift_of(route: Route, expected: ExpectedRouting | None) -> tuple[Drift, ...]:
    """What differs between the configured ``route`` and what the status says was set."""
    if expected is None:
        return ()
    found = describe_split(route.canary_weight, route.canary_hash, route.stable_hash)
    return (
        *weight_drift(expected, found, expected.describe_weight()),
        *route_drift(
            DriftKind.HEADER_ROUTE,
            {name: [m.wire() for m in match] for name, match in expected.header_routes},
            {name: [m.wire() for m in match] for name, match in route.header_routes},
            expected.unknown_routes,
        ),
        *route_drift(
            DriftKind.MIRROR_ROUTE,
            {name: ([m.wire() for m in match], pct) for name, match, pct in expected.mirror_routes},
            {name: ([m.wire() for m in match], pct) for name, match, pct in route.mirror_routes},
            expected.unknown_routes,
        ),
    )
