"""Leader election on a coordination.k8s.io/v1 Lease, so two controller replicas never act at once.

The holder renews ``renewTime`` every ``renew_seconds``; anyone may take the Lease once ``renewTime +
leaseDurationSeconds`` has passed. Every write carries the resourceVersion read, so of two candidates racing for
an expired Lease exactly one wins (the other gets 409 and stays a follower). A leader that cannot renew within
its own lease duration steps down before anyone else may take over, which is what keeps the two from overlapping.
kopf's own "peering" does not use a Lease; this is the ~80-line loop DEPENDENCIES.md §1 suggests.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from headway.core.errors import AdapterError
from headway.kube.client import LEASES, KubeClient

log = logging.getLogger(__name__)


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaderElector:
    """Acquires and renews one Lease; ``leading`` is set while this replica holds it."""

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.leading = asyncio.Event()
        self._renewed_at: datetime | None = None
        self.renew_deadline = lease_seconds * 2 / 3
        """A leader that could not renew for this long stops acting, before the Lease can expire for others."""

    async def run(self) -> None:
        """Campaign and renew until cancelled; on cancellation, release the Lease if held."""
        try:
            while True:
                try:
                    held = await self.try_acquire()
                except AdapterError as error:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                    held = False
                now = datetime.now(UTC)
                if held:
                    self._renewed_at = now
                    self.leading.set()
                elif self._renewed_at is None or now - self._renewed_at > timedelta(seconds=self.renew_deadline):
                    self.leading.clear()
                await asyncio.sleep(self.renew_seconds)
        finally:
            if self.leading.is_set():
                self.leading.clear()
                await asyncio.shield(self.release())

    async def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease; True when this replica holds it afterwards."""
        now = datetime.now(UTC)
        lease = await self._client.get(LEASES, self.name, self.namespace)
        if lease is None:
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(now, 0, now)}
            try:
                await self._client.create(LEASES, body)
            except AdapterError:
                return False
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or renewed + timedelta(seconds=duration) < now
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = _parse(spec.get("acquireTime")) if holder == self.identity else now
        patch = {
            "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
            "spec": self._spec(now, transitions, acquired or now),
        }
        try:
            await self._client.patch(LEASES, self.name, self.namespace, patch)
        except AdapterError:
            return False
        return True

    async def release(self) -> None:
        """Give the Lease up at once (graceful shutdown), so a standby takes over without waiting for expiry."""
        try:
            lease = await self._client.get(LEASES, self.name, self.namespace)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            patch = {
                "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
                "spec": {"holderIdentity": None, "renewTime": None},
            }
            await self._client.patch(LEASES, self.name, self.namespace, patch)
        except AdapterError as error:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, error)

    def _spec(self, now: datetime, transitions: int, acquired: datetime) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": _micro(acquired),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }
