"""Several traffic routers of one Rollout driven as one: every write goes to each, a read agrees or says not.

Argo reconciles every router a Rollout configures (an NGINX Ingress for traffic entering the cluster and an SMI
TrafficSplit inside the mesh, say) and verifies each. Driving only the first would report a weight the others
never got. Here each setter is called on every router in order (the first failure stops the rest and is raised:
the pass fails and the next one sets them all again, setters being idempotent), and `read_state` reports a
weight only when every router that can read back reads the same one (a router that cannot, like a single
one, is trusted with its write, and makes the whole "cannot tell").

When they disagree no single weight is in force: no weight and ``verified`` False, which the core reads as "the
weight could not be read back", so no step passes until every router carries it. Verified only when every router
verified; "cannot tell" when none can and none refuted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import Drift, RouterState
from headway.routers.base import TrafficRouter, Verification
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch


@dataclass(frozen=True)
class CompositeRouter:
    """Implements `headway.routers.base.TrafficRouter` over ``routers`` (named, in trafficRouting order)."""

    routers: Sequence[tuple[str, TrafficRouter]]

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        for _, router in self.routers:
            router.set_weight(rollout, canary_weight, canary_hash, stable_hash)

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        for _, router in self.routers:
            router.set_header_route(rollout, name, match)

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        for _, router in self.routers:
            router.set_mirror_route(rollout, name, match, percentage)

    def remove_managed_routes(self, rollout: Rollout) -> None:
        for _, router in self.routers:
            router.remove_managed_routes(rollout)

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        """Each router's read-back, one weight when they agree (`_combined`); every difference is reported once,
        naming the routers it was found in unless it was found in all."""
        states = [(name, router.read_state(rollout, expected)) for name, router in self.routers]
        combined = _combined([state for _, state in states])
        where: dict[Drift, list[str]] = {}  # the same difference found in several routers is reported once
        for name, state in states:
            for found in state.drift:
                where.setdefault(found, []).append(name)
        everywhere = len(self.routers)
        drift = tuple(
            found if len(names) == everywhere else replace(found, found=f"{found.found} (in {', '.join(names)})")
            for found, names in where.items()
        )
        owned = [state.backends for _, state in states if state.backends is not None]
        return replace(
            combined,
            drift=drift,
            backends={key: count for backends in owned for key, count in backends.items()} if owned else None,
            stable_hash=next((state.stable_hash for _, state in states if state.stable_hash), None),
            restarted="; ".join(f"{name}: {state.restarted}" for name, state in states if state.restarted),
        )

    def restore(self, rollout: Rollout) -> None:
        """Every router is restored even when one fails (the user's objects must come back); the first failure
        is raised afterwards."""
        failure: Exception | None = None
        for _, router in self.routers:
            try:
                router.restore(rollout)
            except Exception as error:  # re-raised below, once the others had their turn  # noqa: BLE001 - fail closed: any failure becomes an error result
                failure = failure or error
        if failure is not None:
            raise failure


def _combined(states: Sequence[RouterState]) -> RouterState:
    """One weight when every router that reads back agrees (none otherwise); verified only when all are."""
    weights = {state.canary_weight for state in states if state.canary_weight is not None}
    verifications = {Verification.of(state.verified) for state in states}
    if len(weights) > 1:
        return RouterState(canary_weight=None, verified=False)
    if Verification.NOT_VERIFIED in verifications:
        verified = Verification.NOT_VERIFIED
    elif verifications == {Verification.VERIFIED}:
        verified = Verification.VERIFIED
    else:  # some cannot tell, none refuted: the whole cannot be verified either
        verified = Verification.NOT_IMPLEMENTED
    return RouterState(canary_weight=weights.pop() if weights else None, verified=verified.as_bool())
