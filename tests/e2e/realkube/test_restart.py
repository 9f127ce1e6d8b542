"""``spec.restartAt`` on a real API server (``kubectl argo rollouts restart``): every pod that predates it is
replaced, one at a time, by the ReplicaSet controller, as the controller's ServiceAccount (listing and deleting
pods is deploy/base's grant); the revision stays the same and ``status.restartedAt`` says when it was done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headway.kube.client import KubeClient, rollouts
from headway.platforms.kubernetes import PODS
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    eventually,
    healthy_on,
    replica_sets,
    rollout_body,
    running,
    status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _pods(admin: KubeClient, namespace: str) -> dict[str, str]:
    """The live pods: uid -> creationTimestamp."""
    return {
        pod["metadata"]["uid"]: pod["metadata"]["creationTimestamp"]
        for pod in await admin.list(PODS, namespace)
        if not pod["metadata"].get("deletionTimestamp")
    }


async def test_restart_at_replaces_every_older_pod_and_records_when(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(GROUP), rollout_body(namespace, replicas=3))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="healthy at 3")
        before = await _pods(admin, namespace)
        assert len(before) == 3
        # creationTimestamp has whole seconds: ask for a restart a second after the newest pod, so every pod
        # predates it and the replacements (created later) do not
        newest = max(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in before.values())
        restart_at = max(newest + timedelta(seconds=1), datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await admin.patch(rollouts(GROUP), "web", namespace, {"spec": {"restartAt": restart_at}})

        async def restarted() -> bool:
            now = await _pods(admin, namespace)
            done = (await status(admin, namespace)).get("restartedAt")
            return len(now) == 3 and not set(now) & set(before) and done is not None

        await eventually(restarted, timeout=60, what="all three pods replaced and restartedAt written")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="healthy again")
    recorded = datetime.fromisoformat(str((await status(admin, namespace))["restartedAt"]).replace("Z", "+00:00"))
    assert recorded >= datetime.fromisoformat(restart_at.replace("Z", "+00:00"))
    assert len(await replica_sets(admin, namespace)) == 1  # a restart is not a new revision
