"""Canary stories on a real API server: replica ratio and Gateway API, pause/promote/abort/retry, the controller
restarted mid-step."""

from __future__ import annotations

from typing import Any

import pytest

from headway.runtimes.kubernetes.client import REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.runtimes.kubernetes.operate import Cluster
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    canary_weight,
    eventually,
    healthy_on,
    http_route,
    replica_sets,
    rollout_body,
    running,
    services,
    set_image,
    status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _replicas_by_image(client: KubeClient, namespace: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for rs in await replica_sets(client, namespace):
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        found[image] = found.get(image, 0) + int((rs.get("status") or {}).get("availableReplicas") or 0)
    return found


async def test_a_replica_ratio_canary_pauses_at_its_step_and_is_promoted(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(GROUP), rollout_body(namespace, replicas=4))
    cluster = Cluster(admin, namespace)
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def paused_half_way() -> bool:
            current = await status(admin, namespace)
            by_image = await _replicas_by_image(admin, namespace)
            return bool(current.get("pauseConditions")) and by_image == {"example/web:1": 2, "example/web:2": 2}

        await eventually(paused_half_way, what="the canary paused at 50% (2 of 4 pods)")
        await cluster.promote("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="the canary promoted")

    async def old_scaled_down() -> bool:
        return await _replicas_by_image(admin, namespace) == {"example/web:1": 0, "example/web:2": 4}

    await eventually(old_scaled_down, what="revision 1 scaled to zero")
