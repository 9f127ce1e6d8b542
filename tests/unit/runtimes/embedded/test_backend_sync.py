"""The hooks that keep every proxy's backends equal to the ready replicas: one rollout's failure stays its own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import cast

import pytest

from headway.platforms.fake import EPOCH
from headway.platforms.local import LocalPlatform
from headway.runtimes.embedded.backends import BackendSync
from headway.runtimes.embedded.proxies import Proxies
from headway.spec.rollout import Rollout, rollout_key
from tests.unit.runtimes.embedded.world import MANIFEST, World


class Replicas:
    """The platform's side: one ready replica per revision."""

    def revisions(self, rollout: Rollout) -> dict[str, object]:
        return {"abc": object()}

    def backends(self, rollout: Rollout, hash: str) -> list[tuple[str, int]]:
        return [("127.0.0.1", 9000)]

    def services(self, rollout: Rollout) -> dict[str, str]:
        return {}


class BrokenFirst:
    """Proxies whose update of ``broken`` fails with an unexpected error (an adapter bug), the others' succeed."""

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.synced: list[str] = []

    def sync(self, rollout: Rollout, backends: Mapping[str, list[tuple[str, int]]]) -> None:
        if rollout_key(rollout) == self.broken:
            raise AttributeError("'list' object has no attribute 'get'")
        self.synced.append(rollout_key(rollout))


def rollouts() -> dict[str, Rollout]:
    world = World()
    try:
        world.runner.apply_text(MANIFEST, "a.yaml")
        world.runner.apply_text(MANIFEST.replace("name: web", "name: zzz"), "b.yaml")
        return world.runner.rollouts()
    finally:
        world.runner.close()


@pytest.mark.asyncio
async def test_an_unexpected_failure_for_one_rollout_is_said_on_it_once_and_the_others_are_synced() -> None:
    found = rollouts()
    found = {key: found[key] for key in ("default/web", "default/zzz")}  # the broken one first
    events: list[tuple[str, str, str, str]] = []
    proxies = BrokenFirst(broken="default/web")
    hooks = BackendSync(
        cast(LocalPlatform, Replicas()),
        cast(Proxies, proxies),
        rollouts=lambda: found,
        record=lambda *event: events.append(event),
    )
    now: datetime = EPOCH

    await hooks.sync(now)
    await hooks.sync(now)

    assert proxies.synced == ["default/zzz", "default/zzz"]
    assert [(key, kind, reason) for key, kind, reason, _ in events] == [("default/web", "Warning", "ProxyUpdateFailed")]
    assert "AttributeError: 'list' object has no attribute 'get'" in events[0][3]
