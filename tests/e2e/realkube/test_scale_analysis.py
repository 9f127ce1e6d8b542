"""The /scale subresource (``kubectl scale`` and an HPA's patch) and AnalysisRuns on a real API server."""

from __future__ import annotations

import json
import re
import subprocess
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


def _put_scale(cluster: RealCluster, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    """PUT a Scale as an HPA or ``kubectl scale`` does: the HTTP status the API server answered, and its message."""
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/rollouts/web/scale"
    sent = cluster.state / f"scale-{namespace}.json"
    sent.write_text(json.dumps(body))
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.admin), "replace", "--raw", path, "-f", str(sent), "-v=6"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    answered = re.search(r"PUT \S+/scale (\d{3}) ", done.stderr)
    assert answered is not None, done.stderr
    return int(answered.group(1)), done.stderr.strip().splitlines()[-1]


async def test_the_scale_subresource_answers_a_stale_write_409_and_an_invalid_one_422_and_the_rollout_keeps_its_size(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """What an HPA or ``kubectl scale`` gets back from Headway's CRD: a Scale written with a resourceVersion the
    Rollout has moved past is refused (409, the client reads again and retries), a negative size is refused (422),
    and neither changes the Rollout; the retried write resizes it."""
    await admin.create(rollouts(GROUP), rollout_body(namespace))
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/rollouts/web/scale"
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="healthy at 2")
        read = json.loads(kubectl(real_cluster.admin, "get", "--raw", path))
        # the Rollout moves on after the client read it (here a label; in life the controller's status writes)
        await admin.patch(rollouts(GROUP), "web", namespace, {"metadata": {"labels": {"touched": "yes"}}})
        stale = {**read, "spec": {"replicas": 4}}
        code, message = _put_scale(real_cluster, namespace, stale)
        assert (code, "the object has been modified" in message) == (409, True), message
        fresh = json.loads(kubectl(real_cluster.admin, "get", "--raw", path))
        code, message = _put_scale(real_cluster, namespace, {**fresh, "spec": {"replicas": -1}})
        assert (code, "spec.replicas" in message) == (422, True), message
        body = await admin.get(rollouts(GROUP), "web", namespace)
        assert body is not None and body["spec"]["replicas"] == 2
        code, message = _put_scale(real_cluster, namespace, {**fresh, "spec": {"replicas": 3}})
        assert code == 200, message

        async def at_three() -> bool:
            return await _available(admin, namespace) == 3

        await eventually(at_three, what="3 pods after the retried write")
