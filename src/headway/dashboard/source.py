"""The one port the dashboard needs: where rollouts come from and where actions go.

The embedded daemon implements it over its runner, the Kubernetes runtime over the API server, and
`headway.dashboard.sim_source` over the simulator (``headway dashboard --demo`` and the browser test). The
dashboard never imports a runtime; a runtime mounts ``create_app(source, …)`` and is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from headway.dashboard.model import Action, ActionResult, ChangeEvent, RolloutView


class RolloutSource(Protocol):
    async def list_rollouts(self) -> list[RolloutView]:
        """Every rollout visible to this source; the detail lists may be left empty."""
        ...

    async def get_rollout(self, name: str, namespace: str) -> RolloutView:
        """One rollout with revisions, runs (measurements, judge evidence), events and weight history.

        Raises `headway.dashboard.model.RolloutNotFoundError` when there is no such rollout."""
        ...

    async def act(self, name: str, namespace: str, action: Action, args: Mapping[str, Any]) -> ActionResult:
        """Record a user's action (it takes effect on the next pass). Raises `RolloutNotFoundError`, or
        `ActionRefusedError` with the reason when the action does not apply now (promote an aborted rollout…)."""
        ...

    def subscribe(self) -> AsyncIterator[ChangeEvent]:
        """Changes from now on, until the consumer stops iterating; never ends on its own."""
        ...
