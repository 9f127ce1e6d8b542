"""``spec.workloadRef.scaleDown``: how the core retires the user's Deployment as the Rollout takes over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from headway.core import actions as a
from headway.spec.status import Phase
from tests.unit.core.driver import World, healthy, rollout, settled

REPLICAS = 10


@dataclass
class Migration(World):
    """The driver's world plus the user's Deployment, scaled down (never up) as `ScaleWorkloadRef` asks."""

    deployment: int = REPLICAS

    def apply(self, action: a.Action) -> None:
        super().apply(action)
        if isinstance(action, a.ScaleWorkloadRef):
            self.deployment = min(self.deployment, action.replicas)

    def available(self) -> int:
        return sum(r.available for r in self.observe().revisions.values())


def migrating(scale_down: str | None, **strategy: Any) -> Migration:
    ref: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    if scale_down is not None:
        ref["scaleDown"] = scale_down
    canary = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}], **strategy}}
    return Migration(rollout=rollout(canary, replicas=REPLICAS, workloadRef=ref), startup=30.0)


def scale_requests(w: World) -> list[int]:
    return [x.replicas for x in w.log if isinstance(x, a.ScaleWorkloadRef)]


@pytest.mark.parametrize("scale_down", [None, "never"])
def test_never_leaves_the_deployment_alone(scale_down: str | None) -> None:
    w = migrating(scale_down)
    w.run(until=healthy)
    w.deploy("app:2").run(until=settled)
    assert scale_requests(w) == []
    assert w.deployment == REPLICAS


def test_onsuccess_scales_the_deployment_to_zero_only_once_the_rollout_is_healthy() -> None:
    w = migrating("onsuccess")
    seen: list[tuple[Phase | None, int]] = []
    w.run(until=healthy, each=lambda w: seen.append((w.status.phase, getattr(w, "deployment", -1))))
    assert all(replicas == REPLICAS for phase, replicas in seen if phase != Phase.HEALTHY)
    assert w.deployment == 0
    assert set(scale_requests(w)) == {0}


def test_progressively_keeps_deployment_plus_available_at_spec_replicas_and_ends_at_zero() -> None:
    w = migrating("progressively", maxSurge=2)
    totals: list[int] = []
    deployments: list[int] = []

    def record(w: World) -> None:
        assert isinstance(w, Migration)
        totals.append(w.deployment + w.available())
        deployments.append(w.deployment)

    w.run(until=healthy, each=record)
    assert min(totals) >= REPLICAS
    assert deployments[0] == REPLICAS  # no Rollout pod was available yet: nothing scaled down
    assert deployments == sorted(deployments, reverse=True)  # only ever down
    assert w.deployment == 0


def test_progressively_asks_only_for_what_the_available_pods_do_not_cover() -> None:
    w = migrating("progressively")
    asked: list[tuple[int, int]] = []

    def record(w: World) -> None:
        assert isinstance(w, Migration)
        if w.status.phase != Phase.HEALTHY:
            asked.append((scale_requests(w)[-1], REPLICAS - w.available()))

    w.run(until=healthy, each=record)
    assert asked and all(request == uncovered for request, uncovered in asked)
    assert asked[0] == (REPLICAS, REPLICAS)


def test_a_later_update_never_grows_the_retired_deployment_again() -> None:
    w = migrating("progressively")
    w.run(until=healthy)
    assert w.deployment == 0
    during: list[int] = []
    w.deploy("app:2").run(until=settled, each=lambda w: during.append(getattr(w, "deployment", -1)))
    assert set(during) == {0}
