"""A Job metric and a background analysis on a real API server, as the controller's ServiceAccount.

Nothing runs in kwok's pods, so a Job's pod never finishes by itself: the test plays the kubelet and reports the
pod's end through the ``pods/status`` subresource as admin (phase Succeeded or Failed with a terminated
container). kwok leaves a finished pod alone, and the real Job controller counts it: the Job becomes Complete or
Failed exactly as it would on a node, and Headway reads only the Job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from headway.kube.client import (
    JOBS,
    REPLICA_SETS,
    RUN_KIND_LABEL,
    KubeClient,
    analysis_runs,
    analysis_templates,
    experiments,
    rollouts,
)
from headway.platforms.kubernetes import PODS
from headway.providers.k8s_job import METRIC_LABEL
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    eventually,
    healthy_on,
    rollout_body,
    running,
    set_image,
    status,
    web_template,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _job_template(namespace: str) -> dict[str, Any]:
    pod = {"spec": {"restartPolicy": "Never", "containers": [{"name": "check", "image": "example/smoke:1"}]}}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke", "namespace": namespace},
        "spec": {"metrics": [{"name": "smoke", "provider": {"job": {"spec": {"backoffLimit": 0, "template": pod}}}}]},
    }


def _finished(phase: str, now: str) -> dict[str, Any]:
    """A pod's status as a kubelet reports a container that ran to its end (exit 0, or 1)."""
    code = 0 if phase == "Succeeded" else 1
    reason = "Completed" if code == 0 else "Error"
    terminated = {"exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now}
    return {
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [
                {"name": "check", "image": "example/smoke:1", "imageID": "", "ready": False, "restartCount": 0}
                | {"state": {"terminated": terminated}}
            ],
        }
    }


@contextlib.asynccontextmanager
async def kubelet(admin: KubeClient, namespace: str, outcome: dict[str, str]) -> AsyncIterator[list[str]]:
    """Ends every running pod of a Job in ``namespace`` with ``outcome["phase"]`` (the test may change it); yields
    the names of the pods it ended."""
    ended: list[str] = []

    async def loop() -> None:
        while True:
            for pod in await admin.list(PODS, namespace):
                meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
                if "job-name" in (meta.get("labels") or {}) and phase in {"Pending", "Running"}:
                    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    await admin.patch(PODS, meta["name"], namespace, _finished(outcome["phase"], now), status=True)
                    ended.append(meta["name"])
            await asyncio.sleep(0.3)

    task = asyncio.create_task(loop())
    try:
        yield ended
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_job_metric_promotes_on_a_succeeded_pod_and_rolls_back_on_a_failed_one(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(analysis_templates(GROUP), _job_template(namespace))
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}]}}]
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy={"canary": {"steps": steps}}))
    outcome = {"phase": "Succeeded"}
    async with running(real_cluster, namespace), kubelet(admin, namespace, outcome) as ended:
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="promoted on a succeeded Job")
        assert len(ended) == 1
        outcome["phase"] = "Failed"
        await set_image(admin, namespace, "example/web:3")

        async def rolled_back() -> bool:
            current = await status(admin, namespace)
            return current.get("abort") is True and current.get("phase") == "Degraded"

        await eventually(rolled_back, what="the rollback after the Job failed")
    jobs = {
        job["metadata"]["name"]: [c["type"] for c in (job.get("status") or {}).get("conditions") or []]
        for job in await admin.list(JOBS, namespace)
    }
    assert sorted(types for types in jobs.values()) == [["Complete"], ["Failed"]], jobs
    assert all(job["metadata"]["labels"][METRIC_LABEL] == "smoke" for job in await admin.list(JOBS, namespace))
    runs = {run["status"]["phase"]: run for run in await admin.list(analysis_runs(GROUP), namespace)}
    assert sorted(runs) == ["Failed", "Successful"]
    failed = runs["Failed"]["status"]["metricResults"][0]["measurements"][-1]
    assert failed["phase"] == "Failed" and "failed" in failed["message"]


async def test_a_failing_background_analysis_aborts_the_canary_while_it_waits_at_a_pause(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    url, answer = rate
    body = web_template(namespace, url)
    body["spec"]["metrics"][0]["interval"] = "1s"  # measured until the rollout ends or it fails
    await admin.create(analysis_templates(GROUP), body)
    canary = {
        "analysis": {"templates": [{"templateName": "success-rate"}], "startingStep": 1},
        "steps": [{"setWeight": 25}, {"setWeight": 50}, {"pause": {}}],
    }
    await admin.create(rollouts(GROUP), rollout_body(namespace, replicas=4, strategy={"canary": canary}))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def measured_at_the_pause() -> bool:
            current = await status(admin, namespace)
            background = (current.get("canary") or {}).get("currentBackgroundAnalysisRunStatus") or {}
            return bool(current.get("pauseConditions")) and background.get("status") == "Running"

        await eventually(measured_at_the_pause, what="paused at step 3 with the background analysis running")
        answer["rate"] = 0.5

        async def aborted() -> bool:
            current = await status(admin, namespace)
            return current.get("abort") is True and current.get("phase") == "Degraded"

        await eventually(aborted, what="the abort after the background analysis failed")
        await eventually(lambda: healthy_on_stable(admin, namespace), what="all pods back on revision 1")
    [run] = await admin.list(analysis_runs(GROUP), namespace)
    assert run["status"]["phase"] == "Failed"
    assert run["metadata"]["labels"][RUN_KIND_LABEL] == "background"


async def healthy_on_stable(admin: KubeClient, namespace: str) -> bool:
    """The aborted canary scaled to nothing and the stable revision back to its 4 available pods."""
    sizes = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: (
            int(rs["spec"]["replicas"]),
            int((rs.get("status") or {}).get("availableReplicas") or 0),
        )
        for rs in await admin.list(REPLICA_SETS, namespace)
    }
    return sizes == {"example/web:1": (4, 4), "example/web:2": (0, 0)}


async def test_an_experiment_of_the_stable_and_canary_templates_runs_to_success_on_headways_own_crds(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    """deploy/base's Experiment and AnalysisRun CRDs (with /status subresources) keep every field Headway writes:
    the Experiment is not refused as cut short, both templates run, the analysis passes, the Rollout goes on."""
    url, _ = rate
    await admin.create(analysis_templates(GROUP), web_template(namespace, url))
    experiment = {
        "duration": "2s",
        "templates": [
            {"name": "baseline", "specRef": "stable"},
            {"name": "candidate", "specRef": "canary", "metadata": {"labels": {"role": "candidate"}}},
        ],
        "analyses": [{"name": "rate", "templateName": "success-rate", "requiredForCompletion": True}],
    }
    steps: list[dict[str, Any]] = [{"setWeight": 25}, {"experiment": experiment}]
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy={"canary": {"steps": steps}}))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")
        await eventually(
            lambda: healthy_on(admin, namespace, "example/web:2"), timeout=60, what="promoted after the experiment"
        )
    [found] = await admin.list(experiments(GROUP), namespace)
    assert found["status"]["phase"] == "Successful", found["status"]
    assert sorted(t["name"] for t in found["status"]["templateStatuses"]) == ["baseline", "candidate"]
    [run] = await admin.list(analysis_runs(GROUP), namespace)
    assert run["status"]["phase"] == "Successful"
