"""``spec.workloadRef`` on a real API server: a Rollout takes over a user's Deployment (its template and selector
read from the Deployment, which the real Deployment controller keeps running), with each of Argo's ``scaleDown``
behaviours, as the controller's ServiceAccount (reading and scaling Deployments is deploy/base's grant).

The three Rollouts share one namespace and one controller (three stories for the price of one start). kwok makes
a bound pod available at once, so ``progressively``'s steps are not held apart here (the emulator suite holds them
with its kubelet); what is checked, at every sample, is its promise: the Deployment's replicas plus the Rollout's
available pods never drop below ``spec.replicas``.
"""

from __future__ import annotations

import asyncio

import pytest

from headway.kube.client import DEPLOYMENTS, REPLICA_SETS, KubeClient, rollouts
from tests.e2e.realkube.cluster import GROUP, RealCluster, eventually, healthy_on, rollout_body, running, template

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
REPLICAS = 3


async def _referencing(admin: KubeClient, namespace: str, name: str, scale_down: str) -> None:
    """The user's Deployment ``name`` at `REPLICAS`, available, and a Rollout ``name`` taking it over."""
    deployment = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": name}}, "template": template(name, "v1")},
    }
    await admin.create(DEPLOYMENTS, deployment)

    async def available() -> bool:
        found = await admin.get(DEPLOYMENTS, name, namespace)
        return int(((found or {}).get("status") or {}).get("availableReplicas") or 0) == REPLICAS

    await eventually(available, what=f"Deployment {name} available")
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "scaleDown": scale_down}
    body = rollout_body(namespace, name, replicas=REPLICAS, workloadRef=ref)
    del body["spec"]["template"], body["spec"]["selector"]
    await admin.create(rollouts(GROUP), body)


async def _deployment_replicas(admin: KubeClient, namespace: str, name: str) -> int:
    found = await admin.get(DEPLOYMENTS, name, namespace)
    assert found is not None
    return int(found["spec"]["replicas"])


async def _rollout_available(admin: KubeClient, namespace: str, name: str) -> int:
    owned = [
        rs
        for rs in await admin.list(REPLICA_SETS, namespace)
        if any(
            ref.get("kind") == "Rollout" and ref.get("name") == name
            for ref in rs["metadata"].get("ownerReferences") or []
        )
    ]
    return sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in owned)


async def test_scale_down_never_onsuccess_and_progressively_retire_the_deployment_as_argo_does(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    for name, scale_down in (("never", "never"), ("onsuccess", "onsuccess"), ("gradual", "progressively")):
        await _referencing(admin, namespace, name, scale_down)
    samples: list[tuple[str, int, int, bool]] = []

    async def sample() -> None:
        while True:
            for name in ("onsuccess", "gradual"):
                replicas = await _deployment_replicas(admin, namespace, name)
                available = await _rollout_available(admin, namespace, name)
                healthy = await healthy_on(admin, namespace, "v1", name=name)
                samples.append((name, replicas, available, healthy))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())  # from before the controller starts: the Deployments at full size
    try:
        async with running(real_cluster, namespace):
            for name in ("never", "onsuccess", "gradual"):
                await eventually(
                    lambda name=name: healthy_on(admin, namespace, "v1", name=name), what=f"{name} Healthy"
                )

            async def retired(name: str) -> bool:
                return await _deployment_replicas(admin, namespace, name) == 0

            await eventually(lambda: retired("onsuccess"), what="the onsuccess Deployment scaled to 0")
            await eventually(lambda: retired("gradual"), what="the progressively Deployment scaled to 0")
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    assert await _deployment_replicas(admin, namespace, "never") == REPLICAS
    early = [s for s in samples if s[0] == "onsuccess" and not s[3] and s[1] < REPLICAS]
    assert not early, f"onsuccess scaled the Deployment down before the Rollout was Healthy: {early}"
    short = [s for s in samples if s[0] == "gradual" and s[1] + s[2] < REPLICAS]
    assert not short, f"progressively left fewer than {REPLICAS} pods serving: {short}"
    assert any(s[0] == "gradual" and s[1] == REPLICAS for s in samples), "no sample before the takeover"
