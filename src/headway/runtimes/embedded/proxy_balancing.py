"""Choosing where a request goes: header routes, then smooth weighted round-robin, then a backend round-robin.

Smooth weighted round-robin is nginx's (``ngx_http_upstream_get_peer``): every pick adds each item's weight to its
running score, takes the highest, and subtracts the total from the winner. Splits are deterministic and evenly
interleaved (weights 20/80 send exactly one of every five consecutive requests to the first), so tests can count
requests instead of sampling, and a 5% canary sees its first request after at most 20, not "probably soon".

A `RoutingTable` is built once per state change (not per request) from the immutable `RoutingState`; backend
slots carry their in-flight counts across rebuilds, so draining can wait for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from headway.runtimes.embedded.proxy_state import HeaderRoute, MirrorRoute, RoutingState

T = TypeVar("T")


class SmoothWeighted(Generic[T]):
    """nginx's smooth weighted round-robin over ``(item, weight)``; zero weights are never picked."""

    __slots__ = ("_current", "_items", "_total", "_weights")

    def __init__(self, items: Sequence[tuple[T, int]]) -> None:
        chosen = [(item, weight) for item, weight in items if weight > 0]
        self._items = [item for item, _ in chosen]
        self._weights = [weight for _, weight in chosen]
        self._current = [0] * len(chosen)
        self._total = sum(self._weights)

    def __bool__(self) -> bool:
        return bool(self._items)

    def pick(self) -> T | None:
        if not self._items:
            return None
        if len(self._items) == 1:
            return self._items[0]
        current, weights = self._current, self._weights
        best = 0
        for index in range(len(current)):
            current[index] += weights[index]
            if current[index] > current[best]:
                best = index
        current[best] -= self._total
        return self._items[best]


@dataclass(eq=False)
class BackendSlot:
    """A backend's live bookkeeping: the base URL, whether it takes new requests, how many it is serving."""

    address: str
    url: str
    draining: bool = False
    inflight: int = 0
    failures: int = 0


@dataclass(eq=False)
class Pool:
    """The ready backends of one revision, picked round-robin."""

    revision: str
    slots: list[BackendSlot] = field(default_factory=list)
    _next: int = 0

    def pick(self, avoid: BackendSlot | None = None) -> BackendSlot | None:
        """The next ready backend other than ``avoid`` (the one that just refused a connection)."""
        slots = self.slots
        count = len(slots)
        for _ in range(count):
            slot = slots[self._next % count]
            self._next += 1
            if not slot.draining and slot is not avoid:
                return slot
        return None

    @property
    def ready(self) -> bool:
        return any(not slot.draining for slot in self.slots)


class RoutingTable:
    """The per-state decision structure: which pool serves a request, which mirror routes may copy it."""

    def __init__(self, state: RoutingState, slots: dict[str, BackendSlot]) -> None:
        self.state = state
        self.pools: dict[str, Pool] = {}
        for revision, backends in state.backends.items():
            pool = Pool(revision=revision)
            for backend in backends:
                slot = slots.get(backend.address)
                if slot is None:
                    slot = slots[backend.address] = BackendSlot(
                        address=backend.address, url=f"http://{backend.address}"
                    )
                slot.draining = backend.draining
                pool.slots.append(slot)
            self.pools[revision] = pool
        self.stable = self.pools.get(state.stable) if state.stable else None
        self.canary = self.pools.get(state.canary) if state.canary else None
        self.header_routes: tuple[HeaderRoute, ...] = state.header_routes
        self.mirrors = [MirrorGate(route) for route in state.mirror_routes]
        ready = [(pool, state.weights.get(revision, 0)) for revision, pool in self.pools.items() if pool.ready]
        self._weighted = SmoothWeighted(ready)
        if not self._weighted:
            # Nothing weighted is ready: stable if it can serve, else any ready revision, rather than a 503.
            fallback = self.stable if self.stable is not None and self.stable.ready else None
            fallback = fallback or next((pool for pool, _ in ready), None)
            self._weighted = SmoothWeighted([(fallback, 1)] if fallback else [])

    def choose(self, headers: Mapping[str, str]) -> Pool | None:
        """Header routes first (to the canary, if it has a ready backend), then the weighted split."""
        if self.header_routes and self.canary is not None and self.canary.ready:
            for route in self.header_routes:
                if route.matches(headers):
                    return self.canary
        return self._weighted.pick()

    def failover(self, pool: Pool, refused: BackendSlot) -> BackendSlot | None:
        """Another ready backend of the same revision, else one of stable (for the single retry)."""
        slot = pool.pick(avoid=refused)
        if slot is None and self.stable is not None and self.stable is not pool:
            slot = self.stable.pick(avoid=refused)
        return slot

    def mirror_target(self, method: str, path: str, headers: Mapping[str, str]) -> BackendSlot | None:
        """The canary backend to copy this request to, if a mirror route matches and its share is due."""
        if self.canary is None:
            return None
        for gate in self.mirrors:
            if gate.route.matches(method, path, headers) and gate.due():
                return self.canary.pick()
        return None

    def inflight(self) -> dict[str, int]:
        return {slot.address: slot.inflight for pool in self.pools.values() for slot in pool.slots}


class MirrorGate:
    """Deterministic share: an accumulator that lets exactly ``percentage`` of every 100 matches through."""

    __slots__ = ("_accumulated", "route")

    def __init__(self, route: MirrorRoute) -> None:
        self.route = route
        self._accumulated = 0

    def due(self) -> bool:
        self._accumulated += self.route.percentage
        if self._accumulated >= 100:
            self._accumulated -= 100
            return True
        return False
