"""Canary stories on a real API server: replica ratio and Gateway API, pause/promote/abort/retry, the controller
restarted mid-step."""

from __future__ import annotations

from typing import Any

import pytest

from headway.kube.client import REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.routers.nginx import INGRESSES, WEIGHT
from headway.routers.smi import TRAFFIC_SPLITS
from headway.runtimes.kubernetes.operate import Cluster
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    available_by_image,
    canary_weight,
    eventually,
    healthy_on,
    http_route,
    replica_sets,
    rollout_body,
    running,
    services,
    set_image,
    status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_a_replica_ratio_canary_pauses_at_its_step_and_is_promoted(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(GROUP), rollout_body(namespace, replicas=4))
    cluster = Cluster(admin, namespace)
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def paused_half_way() -> bool:
            current = await status(admin, namespace)
            by_image = await available_by_image(admin, namespace)
            return bool(current.get("pauseConditions")) and by_image == {"example/web:1": 2, "example/web:2": 2}

        await eventually(paused_half_way, what="the canary paused at 50% (2 of 4 pods)")
        await cluster.promote("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="the canary promoted")

    async def old_scaled_down() -> bool:
        return await available_by_image(admin, namespace) == {"example/web:1": 0, "example/web:2": 4}

    await eventually(old_scaled_down, what="revision 1 scaled to zero")


def _routed(name: str = "web", steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "canary": {
            "canaryService": f"{name}-canary",
            "stableService": f"{name}-stable",
            "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": name}}},
            "steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}],
            "scaleDownDelaySeconds": 0,
            "abortScaleDownDelaySeconds": 0,
        }
    }


async def _pinned(admin: KubeClient, namespace: str, service: str) -> str | None:
    found = await admin.get(SERVICES, service, namespace)
    selector = ((found or {}).get("spec") or {}).get("selector") or {}
    pinned = selector.get("rollouts-pod-template-hash")
    return str(pinned) if pinned else None


async def test_a_gateway_api_canary_sets_each_weight_and_is_promoted(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await services(admin, namespace, "web-stable", "web-canary")
    await http_route(admin, namespace)
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "1s"}},
        {"setWeight": 60},
        {"pause": {"duration": "1s"}},
    ]
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=_routed(steps=steps)))
    seen: list[int | None] = []
    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def promoted() -> bool:
            weight = await canary_weight(admin, namespace)
            if not seen or seen[-1] != weight:
                seen.append(weight)
            return await healthy_on(admin, namespace, "example/web:2")

        await eventually(promoted, what="the canary promoted through 20% and 60%")
    assert 20 in seen and 60 in seen and seen.index(20) < seen.index(60)
    assert await canary_weight(admin, namespace) == 0
    stable = (await status(admin, namespace))["stableRS"]
    assert await _pinned(admin, namespace, "web-stable") == stable
    assert await _pinned(admin, namespace, "web-canary") == stable


async def test_abort_takes_traffic_back_and_retry_starts_the_steps_again(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await services(admin, namespace, "web-stable", "web-canary")
    await http_route(admin, namespace)
    await admin.create(
        rollouts(GROUP), rollout_body(namespace, strategy=_routed(steps=[{"setWeight": 30}, {"pause": {}}]))
    )
    cluster = Cluster(admin, namespace)

    async def paused_at_30() -> bool:
        return await canary_weight(admin, namespace) == 30 and (await status(admin, namespace)).get("phase") == "Paused"

    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")
        await eventually(paused_at_30, what="the canary paused at 30%")
        await cluster.abort("web")

        async def aborted() -> bool:
            current = await status(admin, namespace)
            return await canary_weight(admin, namespace) == 0 and current.get("phase") == "Degraded"

        await eventually(aborted, what="the abort to take traffic back")
        await cluster.retry("web")
        await eventually(paused_at_30, what="the retried canary at 30% again")
        await cluster.pause("web")
        rollout = await admin.get(rollouts(GROUP), "web", namespace)
        assert rollout is not None and rollout["spec"]["paused"] is True
        await cluster.resume("web")
        await cluster.promote("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="the promotion after retry")


async def test_blue_green_switches_the_active_service_on_promotion(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await services(admin, namespace, "web-active", "web-preview")
    blue_green = {
        "blueGreen": {
            "activeService": "web-active",
            "previewService": "web-preview",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 0,
        }
    }
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=blue_green))
    cluster = Cluster(admin, namespace)

    async def image_behind(service: str) -> str | None:
        pinned = await _pinned(admin, namespace, service)
        rs = await admin.get(REPLICA_SETS, f"web-{pinned}", namespace) if pinned else None
        return str(rs["spec"]["template"]["spec"]["containers"][0]["image"]) if rs else None

    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="blue healthy")
        await set_image(admin, namespace, "example/web:2")

        async def previewed() -> bool:
            active, preview = await image_behind("web-active"), await image_behind("web-preview")
            paused = bool((await status(admin, namespace)).get("pauseConditions"))
            return active == "example/web:1" and preview == "example/web:2" and paused

        await eventually(previewed, what="green on the preview Service, blue still active, waiting for promotion")
        await cluster.promote("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="green promoted")
    assert await image_behind("web-active") == "example/web:2"


async def test_a_restarted_controller_resumes_mid_step_with_the_same_replica_sets(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
    await admin.create(rollouts(GROUP), rollout_body(namespace, replicas=4, strategy={"canary": {"steps": steps}}))

    async def paused_at(step: int) -> bool:
        current = await status(admin, namespace)
        return current.get("currentStepIndex") == step and bool(current.get("pauseConditions"))

    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")
        await eventually(lambda: paused_at(1), what="the first pause")
    before = {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in await replica_sets(admin, namespace)}
    assert sorted(before.values()) == [1, 3]
    async with running(real_cluster, namespace, identity="second-replica"):
        await Cluster(admin, namespace).promote("web")
        await eventually(lambda: paused_at(3), what="the next step, from where the first controller left it")
    after = {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in await replica_sets(admin, namespace)}
    assert set(after) == set(before) and sorted(after.values()) == [1, 3]


async def test_every_router_of_a_rollout_is_driven_nginx_and_smi(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """nginx for traffic entering the cluster and an SMI TrafficSplit inside the mesh: both carry each weight."""
    await services(admin, namespace, "web-stable", "web-canary")
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    ingress = {
        "metadata": {"name": "web", "namespace": namespace, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "web.example", "http": {"paths": [path]}}]},
    }
    await admin.create(INGRESSES, ingress)
    strategy = {
        "canary": {
            "canaryService": "web-canary",
            "stableService": "web-stable",
            "trafficRouting": {"nginx": {"stableIngress": "web"}, "smi": {"rootService": "web"}},
            "steps": [{"setWeight": 30}, {"pause": {}}],
            "scaleDownDelaySeconds": 0,
        }
    }
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=strategy))

    async def weights() -> tuple[int | None, int | None]:
        canary_ingress = await admin.get(INGRESSES, "web-web-canary", namespace)
        split = await admin.get(TRAFFIC_SPLITS, "web", namespace)
        nginx = int(canary_ingress["metadata"]["annotations"][WEIGHT]) if canary_ingress is not None else None
        backends = {b["service"]: b["weight"] for b in ((split or {}).get("spec") or {}).get("backends", [])}
        return nginx, backends.get("web-canary")

    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        await set_image(admin, namespace, "example/web:2")

        async def both_at_30() -> bool:
            return (await status(admin, namespace)).get("phase") == "Paused" and await weights() == (30, 30)

        await eventually(both_at_30, what="the canary Ingress and the TrafficSplit both at 30%")
