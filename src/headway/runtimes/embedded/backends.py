"""Keeping every proxy's backends equal to the ready replicas: the runner's hooks around its passes.

The platform knows which replicas of each revision are ready; the proxy routes to the backends it was told.
Before the passes, `BackendSync.sync` sends only what changed since the last push (replicas that became ready
or left; blue/green: all traffic to the active revision). After them, `BackendSync.repair` reads the proxy's
live state back and sets again whatever differs, with a ``TrafficDrift`` event naming it: a pass has just
observed the broken state (a stable revision without backends is not Healthy), so the repair follows within the
same turn, and the pass the core asked for a second later reads it back before the rollout is Healthy again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from headway.core.errors import PermanentError, TemporaryError
from headway.platforms.local import LocalPlatform
from headway.runtimes.embedded.proxies import Proxies, uses_proxy
from headway.spec.rollout import Rollout

log = logging.getLogger(__name__)

Record = Callable[[str, str, str, str], object]
"""Records an event on a rollout: key, type, reason, message (`headway.runtimes.embedded.runner.Runner.record`)."""


class BackendSync:
    """The two hooks; ``rollouts`` and ``record`` are the runner's (which is built with these hooks)."""

    def __init__(
        self,
        platform: LocalPlatform,
        proxies: Proxies,
        rollouts: Callable[[], Mapping[str, Rollout]],
        record: Record,
    ) -> None:
        self.platform = platform
        self.proxies = proxies
        self.rollouts = rollouts
        self.record = record
        self.failing: dict[str, str] = {}
        """The last failure to update each rollout's proxy, so it is reported on the rollout once, not every turn."""

    async def sync(self, _now: datetime) -> None:
        """Before the passes: push what changed."""
        self._each(repair=False)

    async def repair(self, _now: datetime) -> None:
        """After the passes: read back and set again what differs."""
        self._each(repair=True)

    def _each(self, *, repair: bool) -> None:
        """Each routed rollout on its own: one whose proxy cannot be updated never holds up the others'."""
        for key, rollout in self.rollouts().items():
            if not uses_proxy(rollout):
                continue
            try:
                self._one(key, rollout, repair=repair)
            except Exception as error:  # said on the rollout (once per distinct failure), the others go on
                expected = isinstance(error, OSError | PermanentError | TemporaryError)
                detail = str(error) if expected else f"{type(error).__name__}: {error}"
                message = f"updating the proxy of {rollout.name} failed: {detail}"
                log.warning("%s: %s", key, message, exc_info=not expected)
                if self.failing.get(key) != message:
                    self.record(key, "Warning", "ProxyUpdateFailed", message)
                self.failing[key] = message
            else:
                if not repair:  # a failing sync's report stands until a sync succeeds
                    self.failing.pop(key, None)

    def _one(self, key: str, rollout: Rollout, *, repair: bool) -> None:
        platform, proxies = self.platform, self.proxies
        ready = {h: platform.backends(rollout, h) for h in platform.revisions(rollout)}
        blue_green = rollout.spec.strategy.blue_green
        active = platform.services(rollout).get(blue_green.active_service or "") if blue_green else None
        if repair:
            changed = proxies.repair(rollout, ready, active)
            if changed:
                message = (
                    f"Traffic routing of {rollout.name} differs from what Headway set: {'; '.join(changed)}. "
                    f"Assumed cause: an edit of the proxy's state outside Headway (the proxy, "
                    f"{proxies.instance(rollout)}, was not restarted). Set it again."
                )
                log.warning("%s: %s", key, message)
                self.record(key, "Warning", "TrafficDrift", message)
            return
        proxies.sync(rollout, ready)
        if blue_green is not None:
            proxies.route_active(rollout, active)
