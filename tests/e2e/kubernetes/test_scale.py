"""The Rollout's /scale subresource, as an HPA or ``kubectl scale`` uses it, and the controller following it.

The CRD maps /scale to ``spec.replicas``, ``status.replicas`` and ``status.selector``; the emulator serves it
the same way over real HTTP. A scale written there changes ``spec.replicas``, and the controller must scale
the Rollout's ReplicaSets to match and report the new count and its pods' selector back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest

from headway.kube.client import REPLICA_SETS, KubeClient, rollouts
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, Kubelet, eventually, rollout_body, running, status

pytestmark = pytest.mark.asyncio

SCALE_PATH = f"/apis/{GROUP}/v1alpha1/namespaces/default/rollouts/web/scale"


def _replica_ratio_canary() -> dict[str, Any]:
    """A canary without traffic routing: replicas alone carry the weight, so only ReplicaSets are involved."""
    body = rollout_body(steps=[{"setWeight": 50}])
    for field in ("trafficRouting", "canaryService", "stableService", "scaleDownDelaySeconds"):
        body["spec"]["strategy"]["canary"].pop(field)
    return body


async def _scale(api: ApiServer, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, api.url + SCALE_PATH, json=body, headers=headers) as response,
    ):
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


async def _replicas_by_rs(client: KubeClient) -> dict[str, int]:
    return {
        rs["metadata"]["name"]: int(rs["spec"]["replicas"] or 0) for rs in await client.list(REPLICA_SETS, "default")
    }


async def _settled_at(client: KubeClient, replicas: int) -> bool:
    current = await status(client)
    stable = f"web-{current.get('stableRS')}"
    return (
        current.get("phase") == "Healthy"
        and current.get("replicas") == replicas
        and current.get("availableReplicas") == replicas
        and (await _replicas_by_rs(client)).get(stable) == replicas
    )


async def test_scaling_through_the_scale_subresource_scales_the_rollouts_replica_sets(
    api: ApiServer, client: KubeClient
) -> None:
    await client.create(rollouts(GROUP), _replica_ratio_canary())
    async with running(api), Kubelet(client):
        await eventually(lambda: _settled_at(client, 2), what="Healthy at 2 replicas")
        assert (await status(client))["selector"] == "app=web"
        scale = await _scale(api, "GET")
        assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
        assert (scale["spec"], scale["status"]) == ({"replicas": 2}, {"replicas": 2, "selector": "app=web"})

        patched = await _scale(api, "PATCH", {"spec": {"replicas": 5}})  # what an HPA writes
        assert patched["spec"] == {"replicas": 5}
        rollout = await client.get(rollouts(GROUP), "web", "default")
        assert rollout is not None and rollout["spec"]["replicas"] == 5 and rollout["metadata"]["generation"] == 2
        await eventually(lambda: _settled_at(client, 5), what="the ReplicaSet scaled up to 5")
        assert (await _scale(api, "GET"))["status"] == {"replicas": 5, "selector": "app=web"}

        current = await _scale(api, "GET")
        await _scale(api, "PUT", {**current, "spec": {"replicas": 1}})  # a replace, with the version read
        await eventually(lambda: _settled_at(client, 1), what="the ReplicaSet scaled down to 1")
        assert sorted((await _replicas_by_rs(client)).values()) == [1], "one revision, at the new size"


async def test_a_stale_or_invalid_scale_is_refused(api: ApiServer, client: KubeClient) -> None:
    await client.create(rollouts(GROUP), _replica_ratio_canary())
    current = await _scale(api, "GET")
    async with aiohttp.ClientSession() as session:
        stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "0"}, "spec": {"replicas": 3}}
        async with session.put(api.url + SCALE_PATH, json=stale) as response:
            assert response.status == 409
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(api.url + SCALE_PATH, json={"spec": {"replicas": -1}}, headers=headers) as response:
            assert response.status == 422
            assert "spec.replicas" in (await response.json())["message"]
    rollout = await client.get(rollouts(GROUP), "web", "default")
    assert rollout is not None and rollout["spec"]["replicas"] == 2


async def test_kubectl_scale_goes_through_the_scale_subresource(api: ApiServer, client: KubeClient) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is required in CI")
        pytest.skip("kubectl is not installed")
    await client.create(rollouts(GROUP), _replica_ratio_canary())
    done = subprocess.run(
        [kubectl, f"--server={api.url}", "-n", "default", "scale", f"rollouts.{GROUP}/web", "--replicas=4"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": "/dev/null"},
    )
    assert done.returncode == 0, done.stderr
    rollout = await client.get(rollouts(GROUP), "web", "default")
    assert rollout is not None and rollout["spec"]["replicas"] == 4
