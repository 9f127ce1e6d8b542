"""Several traffic routers of one Rollout driven as one: every write goes to each, a read agrees or says not.

Argo reconciles every router a Rollout configures (an NGINX Ingress for traffic entering the cluster and an SMI
TrafficSplit inside the mesh, say) and verifies each. Driving only the first would report a weight the others
never got. Here each setter is called on every router in order (the first failure stops the rest and is raised:
the pass fails and the next one sets them all again, setters being idempotent), and `read_weight` reports a
weight only when every router that can read back reads the same one (a router that cannot, like a single
one, is trusted with its write, and makes the whole "cannot tell").

When they disagree no single weight is in force, yet the core compares the weight read with the weight it
wants and trusts its own last write when nothing is read (None). So a disagreement is reported as
`DISAGREE`, a weight no step can ask for: the rollout waits until every router carries the weight, and
``verified`` is False. Verified only when every router verified; "cannot tell" when none can and none refuted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headway.core.observation import RouterState
from headway.routers.base import TrafficRouter, Verification
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch

DISAGREE = -1
"""The canary weight reported when the routers read back different weights (no step asks for it)."""


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

    def read_weight(self, rollout: Rollout) -> RouterState:
        states = [router.read_weight(rollout) for _, router in self.routers]
        weights = {state.canary_weight for state in states if state.canary_weight is not None}
        verifications = {Verification.of(state.verified) for state in states}
        if len(weights) > 1:
            return RouterState(canary_weight=DISAGREE, verified=False)
        if Verification.NOT_VERIFIED in verifications:
            verified = Verification.NOT_VERIFIED
        elif verifications == {Verification.VERIFIED}:
            verified = Verification.VERIFIED
        else:  # some cannot tell, none refuted: the whole cannot be verified either
            verified = Verification.NOT_IMPLEMENTED
        return RouterState(canary_weight=weights.pop() if weights else None, verified=verified.as_bool())

    def restore(self, rollout: Rollout) -> None:
        """Every router is restored even when one fails (the user's objects must come back); the first failure
        is raised afterwards."""
        failure: Exception | None = None
        for _, router in self.routers:
            try:
                router.restore(rollout)
            except Exception as error:  # re-raised below, once the others had their turn
                failure = failure or error
        if failure is not None:
            raise failure
