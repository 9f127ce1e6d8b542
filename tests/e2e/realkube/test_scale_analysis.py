"""The /scale subresource (``kubectl scale`` and an HPA's patch) and AnalysisRuns on a real API server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from headway.kube.client import KubeClient, analysis_runs, analysis_templates, rollouts
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    eventually,
    healthy_on,
    kubectl,
    replica_sets,
    rollout_body,
    running,
    set_image,
    status,
    web_template,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _available(admin: KubeClient, namespace: str) -> int:
    return sum(
        int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in await replica_sets(admin, namespace)
    )


async def test_kubectl_scale_and_an_hpa_patch_of_the_scale_subresource_resize_the_rollout(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(GROUP), rollout_body(namespace))
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/rollouts/web/scale"
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="healthy at 2")
        assert json.loads(kubectl(real_cluster.admin, "get", "--raw", path))["status"] == {
            "replicas": 2,
            "selector": "app=web",
        }
        kubectl(real_cluster.admin, "-n", namespace, "scale", f"rollouts.{GROUP}/web", "--replicas=4")

        async def at(count: int) -> bool:
            scale = json.loads(kubectl(real_cluster.admin, "get", "--raw", path))
            return await _available(admin, namespace) == count and scale["status"]["replicas"] == count

        await eventually(lambda: at(4), what="4 pods after kubectl scale")
        patch = json.dumps({"spec": {"replicas": 3}})  # what the HPA controller sends
        kubectl(
            real_cluster.admin,
            "-n",
            namespace,
            "patch",
            f"rollouts.{GROUP}/web",
            "--subresource=scale",
            "--type=merge",
            "-p",
            patch,
        )
        await eventually(lambda: at(3), what="3 pods after the HPA-style patch")
    assert len(await replica_sets(admin, namespace)) == 1  # resizing is not a new revision


async def test_a_step_analysis_promotes_a_good_canary_and_rolls_a_bad_one_back(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    url, answer = rate
    await admin.create(analysis_templates(GROUP), web_template(namespace, url))
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
    ]
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy={"canary": {"steps": steps}}))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="promoted after a good analysis")
        answer["rate"] = 0.5
        await set_image(admin, namespace, "example/web:3")

        async def rolled_back() -> bool:
            current = await status(admin, namespace)
            return current.get("abort") is True and current.get("phase") == "Degraded"

        await eventually(rolled_back, what="the rollback after a failed analysis")
    phases = sorted(run["status"]["phase"] for run in await admin.list(analysis_runs(GROUP), namespace))
    assert phases == ["Failed", "Successful"]
