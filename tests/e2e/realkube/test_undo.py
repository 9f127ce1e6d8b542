"""``undo`` on a real API server, which defaults the pod template of every ReplicaSet it stores
(``imagePullPolicy``, ``terminationMessagePath``, ``dnsPolicy``, ``securityContext: {}``, ...).

Copying that defaulted template back into the Rollout hashed differently from the template the user wrote, so undo
made a third ReplicaSet (a new revision) instead of bringing revision 1 back. Undo must restore the template as the
user wrote it: the same hash, the same ReplicaSet.
"""

from __future__ import annotations

from typing import Any

import pytest

from headway.kube.client import KubeClient, rollouts
from headway.runtimes.kubernetes.operate import Cluster
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    eventually,
    healthy_on,
    replica_sets,
    rollout_body,
    running,
    set_image,
    status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _v2_promoted(admin: KubeClient, namespace: str, **spec: Any) -> tuple[Cluster, str]:
    """Revision 1 healthy, then revision 2 promoted (full); returns the CLI's cluster and revision 1's hash."""
    await admin.create(rollouts(GROUP), rollout_body(namespace, **spec))
    await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
    first = (await status(admin, namespace))["stableRS"]
    await set_image(admin, namespace, "example/web:2")
    cluster = Cluster(admin, namespace)

    async def paused() -> bool:
        return bool((await status(admin, namespace)).get("pauseConditions"))

    await eventually(paused, what="revision 2 paused at its step")
    await cluster.promote("web", full=True)
    await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="revision 2 promoted")
    return cluster, str(first)


async def _hashes(admin: KubeClient, namespace: str) -> set[str]:
    return {rs["metadata"]["labels"]["rollouts-pod-template-hash"] for rs in await replica_sets(admin, namespace)}


async def test_undo_inside_the_rollback_window_scales_revision_1_back_without_a_new_replica_set(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    async with running(real_cluster, namespace):
        cluster, first = await _v2_promoted(admin, namespace, rollbackWindow={"revisions": 2})
        await cluster.undo("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 back")
        current = await status(admin, namespace)
        assert current["stableRS"] == first  # the same ReplicaSet, not a new revision of the same image
        assert not current.get("pauseConditions")  # fast-tracked: no steps inside the window
    assert len(await _hashes(admin, namespace)) == 2


async def test_undo_outside_the_rollback_window_goes_through_the_steps_on_revision_1s_replica_set(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    async with running(real_cluster, namespace):
        cluster, first = await _v2_promoted(admin, namespace)
        await cluster.undo("web")

        async def paused_on_revision_1() -> bool:
            current = await status(admin, namespace)
            return bool(current.get("pauseConditions")) and current.get("currentPodHash") == first

        await eventually(paused_on_revision_1, what="the undo to pause at its first step, on revision 1's hash")
        assert len(await _hashes(admin, namespace)) == 2
        await cluster.promote("web", full=True)
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 back")
        assert (await status(admin, namespace))["stableRS"] == first
