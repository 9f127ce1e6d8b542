"""The API server's answers the fidelity emulator (tests/e2e/kubernetes/emulator.py) copies, checked at the
source: a patch that changes nothing is no write (the resourceVersion stays, so no watcher hears of it: every
watch event carries a new one), through the object, its /status and its /scale alike."""

from __future__ import annotations

import json

import pytest

from headway.kube.client import KubeClient, rollouts
from tests.e2e.realkube.cluster import GROUP, RealCluster, kubectl, rollout_body

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
ROLLOUTS = rollouts(GROUP)


async def _version(admin: KubeClient, namespace: str) -> str:
    found = await admin.get(ROLLOUTS, "web", namespace)
    assert found is not None
    return str(found["metadata"]["resourceVersion"])


async def test_a_patch_that_changes_nothing_keeps_the_resource_version(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """Each write is made twice by the same field manager: the first may change something (its value, or only who
    manages the field: kubectl is another manager than the client that created the Rollout), the second cannot."""
    await admin.create(ROLLOUTS, rollout_body(namespace))
    same_size = json.dumps({"spec": {"replicas": 2}})
    resource = f"rollouts.{GROUP}/web"

    async def writes() -> None:
        await admin.patch(ROLLOUTS, "web", namespace, {"metadata": {"labels": {"team": "a"}}})
        await admin.patch(ROLLOUTS, "web", namespace, {"status": {"phase": "Healthy"}}, status=True)
        await admin.patch(ROLLOUTS, "web", namespace, {"status": {"phase": "Degraded"}})  # the main path ignores it
        scale = ["-n", namespace, "patch", resource, "--subresource=scale", "--type=merge", "-p", same_size]
        kubectl(real_cluster.admin, *scale)

    await writes()
    before = await _version(admin, namespace)
    await writes()
    assert await _version(admin, namespace) == before
    await admin.patch(ROLLOUTS, "web", namespace, {"metadata": {"labels": {"team": "b"}}})
    assert await _version(admin, namespace) != before
