"""Flux and ``kubectl wait`` on a real API server: the kstatus conditions Headway writes say when a rollout is done.

``kubectl wait --for=condition=Ready`` must return only once the new revision is stable (not on the previous
spec's Ready), and a rolled-back rollout must read as failed the way kstatus reads it: ``Stalled`` True,
``Ready`` False, ``status.observedGeneration`` an integer equal to ``metadata.generation``.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from headway.kube.client import EVENTS, KubeClient, rollouts
from headway.runtimes.kubernetes.operate import Cluster
from tests.e2e.realkube.cluster import GROUP, RealCluster, eventually, healthy_on, rollout_body, running, set_image

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
RESOURCE = f"rollouts.{GROUP}/web"


def _wait(cluster: RealCluster, namespace: str, condition: str, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.admin), "-n", namespace, "wait", RESOURCE,
         f"--for=condition={condition}", f"--timeout={timeout}s"],
        capture_output=True, text=True, timeout=timeout + 30, check=False,
    )  # fmt: skip


def _conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}


def _kstatus(body: dict[str, Any]) -> str:
    """kstatus' generic rules (sigs.k8s.io/cli-utils/pkg/kstatus): InProgress, Failed or Current."""
    generation = body["metadata"]["generation"]
    observed = (body.get("status") or {}).get("observedGeneration")
    assert isinstance(observed, int), f"kstatus reads observedGeneration as an integer, got {observed!r}"
    if observed != generation:
        return "InProgress"
    conditions = _conditions(body)
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    return "Current"


async def test_kubectl_wait_for_ready_returns_when_the_new_revision_is_stable(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "3s"}}]
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy={"canary": {"steps": steps}}))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        assert _wait(real_cluster, namespace, "Ready", 30).returncode == 0
        await set_image(admin, namespace, "example/web:2")
        waited = await asyncio.to_thread(_wait, real_cluster, namespace, "Ready", 90)
        assert waited.returncode == 0, waited.stderr
        assert await healthy_on(admin, namespace, "example/web:2"), "Ready came before v2 was stable"
        body = await admin.get(rollouts(GROUP), "web", namespace)
        assert body is not None and _kstatus(body) == "Current"
        ready = _conditions(body)["Ready"]
        assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
            "True",
            "RolloutHealthy",
            body["metadata"]["generation"],
        )


async def test_a_rolled_back_rollout_is_stalled_and_never_ready(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(GROUP), rollout_body(namespace))
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def paused() -> bool:
            body = await admin.get(rollouts(GROUP), "web", namespace)
            return body is not None and _kstatus(body) == "InProgress" and body["status"].get("phase") == "Paused"

        await eventually(paused, what="the canary paused (kstatus: InProgress)")
        await Cluster(admin, namespace).abort("web")
        stalled = await asyncio.to_thread(_wait, real_cluster, namespace, "Stalled", 60)
        assert stalled.returncode == 0, stalled.stderr
        assert _wait(real_cluster, namespace, "Ready", 3).returncode != 0
        body = await admin.get(rollouts(GROUP), "web", namespace)
        assert body is not None and _kstatus(body) == "Failed"
        assert _conditions(body)["Stalled"]["reason"] == "RolloutAborted"


async def test_an_invalid_rollout_is_stalled_with_an_event_under_the_controllers_own_rbac(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """The refusal is written as the ServiceAccount: its /status write keeps an integer observedGeneration in the
    CRD's schema, and it may create the Event that says why."""
    unknown = {"canary": {"trafficRouting": {"plugins": {"example.com/unknown": {}}}, "steps": [{"setWeight": 20}]}}
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=unknown))
    async with running(real_cluster, namespace):

        async def stalled() -> bool:
            body = await admin.get(rollouts(GROUP), "web", namespace)
            if body is None or (body.get("status") or {}).get("observedGeneration") is None:
                return False  # not written yet
            return _kstatus(body) == "Failed"

        await eventually(stalled, what="the invalid rollout Stalled")

        async def explained() -> bool:
            events = await admin.list(EVENTS, namespace)
            return any(
                e.get("reason") == "InvalidSpec" and "example.com/unknown" in e.get("message", "") for e in events
            )

        await eventually(explained, what="an InvalidSpec Event naming the router")
    body = await admin.get(rollouts(GROUP), "web", namespace)
    assert body is not None
    assert (_conditions(body)["Stalled"]["reason"], body["status"]["phase"]) == ("InvalidSpec", "Degraded")
