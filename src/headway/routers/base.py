"""Traffic routers: the port that shifts a share of requests from the stable revision to the canary.

Each router (Gateway API, Istio, NGINX, SMI, the embedded proxy, the fake) implements `TrafficRouter`. Every
setter is idempotent, because a pass can stop between two actions and the next pass sets the same values again.
Every router reads back what it set (`read_state`, every pass: the weight, so the core waits until the data plane
really sends that share before it starts measuring, and every managed part, so a change made behind Headway's
back is found, reported and set again) and undoes it (`restore`, which puts the user's objects back as they
were).

Verification is a tri-state from the start: argo's nullable ``VerifyWeight`` bool later needed an RPC enum
(``RpcVerified``) to tell "not yet" from "cannot tell".
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import RouterState
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch


class Verification(StrEnum):
    """Whether the data plane is known to apply the weight that was set."""

    VERIFIED = "Verified"
    NOT_VERIFIED = "NotVerified"
    NOT_IMPLEMENTED = "NotImplemented"
    """The router cannot read back from its data plane; the core must trust the write."""

    def as_bool(self) -> bool | None:
        """The value `RouterState.verified` carries: True, False, or None for "cannot tell"."""
        return {Verification.VERIFIED: True, Verification.NOT_VERIFIED: False}.get(self)

    @classmethod
    def of(cls, verified: bool | None) -> Verification:
        if verified is None:
            return cls.NOT_IMPLEMENTED
        return cls.VERIFIED if verified else cls.NOT_VERIFIED


class TrafficRouter(Protocol):
    """Shifts traffic between the stable and canary revisions of a rollout."""

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        """Send ``canary_weight`` percent to the canary and the rest to stable; idempotent."""
        ...

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        """Route requests matching all of ``match`` to the canary; None removes the route ``name``; idempotent."""
        ...

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        """Copy ``percentage`` of matching requests to the canary; None removes the route ``name``; idempotent."""
        ...

    def remove_managed_routes(self, rollout: Rollout) -> None:
        """Remove every header and mirror route Headway added, leaving weights alone; idempotent."""
        ...

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        """What the data plane does now, read back every pass: the canary weight it reports and whether that
        matches the last write, every managed part (weights, header and mirror routes) that differs from
        ``expected`` (what the status says Headway set; None: nothing to compare), the backends routed per
        revision where the router owns them, and whether the data plane was replaced since the last read;
        changes nothing."""
        ...

    def restore(self, rollout: Rollout) -> None:
        """Put the user's routing objects back exactly as they were before Headway touched them; idempotent."""
        ...
