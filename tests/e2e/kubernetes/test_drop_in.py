"""Drop-in mode: ``--api-group argoproj.io`` serves an Argo Rollouts manifest unchanged, where Argo is not installed.

The Rollout and its AnalysisTemplate are written exactly as an Argo user has them (``argoproj.io/v1alpha1``,
a replica-ratio canary with a step analysis on a web metric); the controller must take it from first deploy
through the analysis to promotion, create its AnalysisRuns in ``argoproj.io``, write Argo's status fields, and
touch nothing in our own group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from headway.kube.client import REPLICA_SETS, KubeClient, analysis_runs, analysis_templates, rollouts
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, Kubelet, eventually, rate_endpoint, running

pytestmark = pytest.mark.asyncio

ARGO = "argoproj.io"


@pytest_asyncio.fixture
async def healthy_endpoint() -> AsyncIterator[str]:
    """A metrics endpoint on 127.0.0.1 answering a success rate of 1.0."""
    async with rate_endpoint({"rate": 1.0}) as url:
        yield url


def argo_rollout(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "guestbook", "namespace": "default"},
        "spec": {
            "replicas": 4,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": "guestbook"}},
            "template": {
                "metadata": {"labels": {"app": "guestbook"}},
                "spec": {"containers": [{"name": "guestbook", "image": image, "ports": [{"containerPort": 80}]}]},
            },
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 25},
                        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
                        {"setWeight": 50},
                        {"pause": {"duration": "1s"}},
                    ],
                }
            },
        },
    }


def argo_template(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate", "namespace": "default"},
        "spec": {
            "metrics": [
                {
                    "name": "success-rate",
                    "count": 2,
                    "interval": "1s",
                    "successCondition": "result >= 0.95",
                    "provider": {"web": {"url": url, "jsonPath": "{$.rate}"}},
                }
            ]
        },
    }


async def _rollout(client: KubeClient) -> dict[str, Any]:
    return await client.get(rollouts(ARGO), "guestbook", "default") or {}


async def test_an_argo_manifest_rolls_out_unchanged_in_drop_in_mode(
    api: ApiServer, client: KubeClient, healthy_endpoint: str
) -> None:
    for plural, kind in (
        ("rollouts", "Rollout"),
        ("analysisruns", "AnalysisRun"),
        ("analysistemplates", "AnalysisTemplate"),
        ("experiments", "Experiment"),
    ):
        api.emulator.declare(ARGO, "v1alpha1", plural, kind)
    api.emulator.declare(ARGO, "v1alpha1", "clusteranalysistemplates", "ClusterAnalysisTemplate", namespaced=False)
    await client.create(analysis_templates(ARGO), argo_template(healthy_endpoint))
    await client.create(rollouts(ARGO), argo_rollout("argoproj/rollouts-demo:blue"))

    async def healthy_on(image: str) -> bool:
        status = (await _rollout(client)).get("status") or {}
        if status.get("phase") != "Healthy" or not status.get("stableRS"):
            return False
        rs = await client.get(REPLICA_SETS, f"guestbook-{status['stableRS']}", "default")
        return rs is not None and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image

    async with Kubelet(client), running(api, api_group=ARGO):
        await eventually(lambda: healthy_on("argoproj/rollouts-demo:blue"), what="the first revision to be stable")
        first = (await _rollout(client))["status"]["stableRS"]
        template = argo_rollout("argoproj/rollouts-demo:yellow")["spec"]["template"]
        await client.patch(rollouts(ARGO), "guestbook", "default", {"spec": {"template": template}})
        await eventually(lambda: healthy_on("argoproj/rollouts-demo:yellow"), timeout=45, what="the promotion")

    rollout = await _rollout(client)
    status = rollout["status"]
    assert status["stableRS"] == status["currentPodHash"] != first
    assert status["currentStepIndex"] == 4
    assert (
        status["observedGeneration"] == str(rollout["metadata"]["generation"])
        or status["observedGeneration"] == rollout["metadata"]["generation"]
    )
    runs = await client.list(analysis_runs(ARGO), "default")
    assert [run["status"]["phase"] for run in runs] == ["Successful"]
    [run] = runs
    assert run["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    assert run["metadata"]["ownerReferences"][0]["apiVersion"] == "argoproj.io/v1alpha1"
    assert len(run["status"]["metricResults"][0]["measurements"]) == 2
    assert await client.list(rollouts(GROUP), "default") == []
    assert await client.list(analysis_runs(GROUP), "default") == []
