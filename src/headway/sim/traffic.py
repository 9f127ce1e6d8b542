"""A synthetic traffic model in virtual time: who serves the users' requests, and how many fail.

Requests arrive at a steady rate. How they are split follows how the rollout is wired:
- a canary with ``trafficRouting``: the router's effective weight goes to the canary revision, the rest to stable
  (header and mirror routes carry no user traffic here: users do not send the test header, and mirrored copies
  are never answered to a user);
- blue/green: everything goes to the revision the active Service points at;
- otherwise (a basic canary, or before any Service is pointed): every ready pod of every revision takes an equal
  share, as a Service selecting all of them would give.
A revision's requests fail at its error rate; requests sent to a revision with no ready pod all fail (the 503s
a weight set too early would cause). Counts are expected values (floats), so a run is deterministic; they are
rounded only for display.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from headway.platforms.fake import FakePlatform
from headway.routers.fake import FakeRouter
from headway.spec.rollout import Rollout

NOWHERE = ""
"""The key of requests no revision could take (no ready pod anywhere)."""


@dataclass(frozen=True)
class Profile:
    """How a revision answers: the share of requests that fail, and how long a request takes."""

    error_rate: float = 0.001
    latency_ms: float = 50.0


@dataclass
class Served:
    """Requests one revision received so far (expected values)."""

    requests: float = 0.0
    failed: float = 0.0
    latency_ms_total: float = 0.0

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_ms_total / self.requests if self.requests else 0.0


def split(rollout: Rollout, platform: FakePlatform, router: FakeRouter | None) -> dict[str, float]:
    """The share of user requests each revision receives now, by hash (`NOWHERE` for the unroutable part)."""
    revisions = platform.revisions(rollout)
    services = platform.services(rollout)
    blue_green = rollout.spec.strategy.blue_green
    canary = rollout.spec.strategy.canary
    active = blue_green.active_service if blue_green is not None else None
    if active is not None and active in services:
        return {services[active]: 1.0}
    if canary is not None and canary.traffic_routing is not None and router is not None:
        route = router.route(rollout)
        stable = route.stable_hash or services.get(canary.stable_service or "")
        if stable is not None:
            weight = route.canary_weight / 100 if route.canary_hash else 0.0
            if route.canary_hash is None or route.canary_hash == stable or weight == 0:
                return {stable: 1.0}
            return {route.canary_hash: weight, stable: 1.0 - weight} if weight < 1 else {route.canary_hash: 1.0}
    ready = {pod_hash: state.ready for pod_hash, state in revisions.items() if state.ready > 0}
    total = sum(ready.values())
    if total == 0:
        return {NOWHERE: 1.0}
    return {pod_hash: count / total for pod_hash, count in ready.items()}


@dataclass
class TrafficModel:
    """Accumulates requests per revision as virtual time advances."""

    rps: float
    profile: Callable[[str], Profile]
    now: datetime
    served: dict[str, Served] = field(default_factory=dict)

    def advance(self, now: datetime, shares: Mapping[str, float], ready: Mapping[str, int]) -> None:
        """Send the requests of ``(self.now, now]`` according to ``shares``; ``ready`` pods per hash."""
        seconds = (now - self.now).total_seconds()
        if seconds < 0:
            raise ValueError(f"virtual time goes forward only: {now.isoformat()} < {self.now.isoformat()}")
        self.now = now
        if seconds == 0:
            return
        for pod_hash, share in shares.items():
            requests = self.rps * seconds * share
            if requests <= 0:
                continue
            served = self.served.setdefault(pod_hash, Served())
            served.requests += requests
            if pod_hash == NOWHERE or ready.get(pod_hash, 0) == 0:
                served.failed += requests
                continue
            profile = self.profile(pod_hash)
            served.failed += requests * profile.error_rate
            served.latency_ms_total += requests * profile.latency_ms

    def requests(self, pod_hash: str) -> float:
        served = self.served.get(pod_hash)
        return served.requests if served else 0.0

    def failed(self) -> float:
        """Every failed request, whichever revision (or none) it reached: what users saw."""
        return sum(served.failed for served in self.served.values())

    def total(self) -> float:
        return sum(served.requests for served in self.served.values())
