"""Workload features through the controller against the fidelity emulator over real HTTP, with real Pod objects.

`PodKubelet` plays the ReplicaSet controller and the kubelet together: it creates and deletes Pods to match each
ReplicaSet's replicas (labels and annotations copied from the ReplicaSet's template, as the real controller
does), marks them ready after ``startup`` seconds (up to ``ready_cap`` at a time, so a test can move readiness
one pod at a time), and reports the counts in the ReplicaSet's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from headway.core.errors import AdapterError
from headway.kube.client import DEPLOYMENTS, REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.platforms.kubernetes import EPHEMERAL_ANNOTATION, HASH_LABEL, PODS, REVISION_ANNOTATION
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, eventually, promote, running, status

pytestmark = pytest.mark.asyncio

NAMESPACE = "default"


class PodKubelet:
    """ReplicaSets → Pods → readiness → ReplicaSet status, in one loop (see the module docstring)."""

    def __init__(self, client: KubeClient, *, startup: float = 0.3) -> None:
        self._client = client
        self.startup = startup
        self.ready_cap: int | None = None
        """At most this many pods (of all ReplicaSets) are ready at once; None: no limit."""
        self._seen: dict[str, float] = {}
        self._ready: set[str] = set()
        self._names = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    async def pods(self, pod_hash: str | None = None) -> list[dict[str, Any]]:
        labels = {HASH_LABEL: pod_hash} if pod_hash else None
        pods = await self._client.list(PODS, NAMESPACE, labels)
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    async def _sync(self, rs: dict[str, Any]) -> None:
        name, wanted = rs["metadata"]["name"], int(rs["spec"].get("replicas") or 0)
        pod_hash = rs["metadata"]["labels"][HASH_LABEL]
        mine = [
            p
            for p in await self.pods(pod_hash)
            if any(o.get("name") == name for o in p["metadata"].get("ownerReferences") or [])
        ]
        template = rs["spec"]["template"].get("metadata") or {}
        for _ in range(wanted - len(mine)):
            body = {
                "metadata": {
                    "name": f"{name}-{next(self._names)}",
                    "namespace": NAMESPACE,
                    "labels": dict(template.get("labels") or {}),
                    "annotations": dict(template.get("annotations") or {}),
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rs["metadata"]["uid"]}
                    ],
                },
                "spec": rs["spec"]["template"].get("spec") or {},
            }
            mine.append(await self._client.create(PODS, body))
        for pod in sorted(mine, key=lambda p: p["metadata"]["uid"] in self._ready)[: max(0, len(mine) - wanted)]:
            await self._client.delete(PODS, pod["metadata"]["name"], NAMESPACE)
            mine.remove(pod)
        now = time.monotonic()
        for pod in mine:
            uid = pod["metadata"]["uid"]
            self._seen.setdefault(uid, now)
            cap_left = self.ready_cap is None or len(self._ready) < self.ready_cap
            if uid not in self._ready and now - self._seen[uid] >= self.startup and cap_left:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                condition = {"type": "Ready", "status": "True", "lastTransitionTime": stamp}
                patch = {"status": {"conditions": [condition]}}
                await self._client.patch(PODS, pod["metadata"]["name"], NAMESPACE, patch, status=True)
                self._ready.add(uid)
        ready = sum(1 for p in mine if p["metadata"]["uid"] in self._ready)
        counts = {"replicas": len(mine), "readyReplicas": ready, "availableReplicas": ready}
        if any((rs.get("status") or {}).get(k) != v for k, v in counts.items()):
            await self._client.patch(REPLICA_SETS, name, NAMESPACE, {"status": counts}, status=True)

    async def _loop(self) -> None:
        while True:
            try:
                live = {p["metadata"]["uid"] for p in await self.pods()}
                self._ready &= live
                for rs in await self._client.list(REPLICA_SETS, NAMESPACE):
                    with contextlib.suppress(AdapterError):  # the RS or a pod went meanwhile: next round sees
                        await self._sync(rs)
            except AdapterError:
                pass
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> PodKubelet:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def pod_template(image: str = "example/web:1") -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}


def rollout_body(*, replicas: int = 2, **spec: Any) -> dict[str, Any]:
    """A basic canary (no traffic router, no Services) in headway.dev/v1alpha1."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template(),
            "strategy": {"canary": {"steps": []}},
            **spec,
        },
    }
    return body


async def healthy_on(client: KubeClient, image: str) -> bool:
    current = await status(client)
    if current.get("phase") != "Healthy" or not current.get("stableRS"):
        return False
    rs = await client.get(REPLICA_SETS, f"web-{current['stableRS']}", NAMESPACE)
    return rs is not None and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image


async def new_image(client: KubeClient, image: str) -> None:
    await client.patch(rollouts(GROUP), "web", NAMESPACE, {"spec": {"template": pod_template(image)}})


async def deployment_replicas(client: KubeClient) -> int:
    deployment = await client.get(DEPLOYMENTS, "web", NAMESPACE)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


async def referencing(client: KubeClient, scale_down: str, replicas: int) -> None:
    """The user's Deployment at ``replicas`` and a Rollout that takes it over with ``scaleDown``."""
    deployment = {
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template()},
    }
    await client.create(DEPLOYMENTS, deployment)
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": scale_down}
    body = rollout_body(replicas=replicas, workloadRef=ref)
    del body["spec"]["template"], body["spec"]["selector"]
    await client.create(rollouts(GROUP), body)


# --- workloadRef.scaleDown --------------------------------------------------------------------------------------


async def test_progressively_scales_the_deployment_down_as_rollout_pods_become_available(
    api: ApiServer, client: KubeClient
) -> None:
    replicas = 4
    await referencing(client, "progressively", replicas)
    async with PodKubelet(client) as kubelet, running(api):
        kubelet.ready_cap = 0
        await eventually(lambda: _pods_exist(kubelet, replicas), what="the Rollout's pods")
        assert await deployment_replicas(client) == replicas  # nothing available yet: nothing scaled down
        for available in range(1, replicas + 1):
            kubelet.ready_cap = available  # one more Rollout pod becomes available

            async def caught_up(available: int = available) -> bool:
                return await deployment_replicas(client) == replicas - available

            await eventually(caught_up, what=f"the Deployment at {replicas - available} for {available} available")
            assert await deployment_replicas(client) + available >= replicas
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the Rollout to be Healthy")
    assert await deployment_replicas(client) == 0


async def _pods_exist(kubelet: PodKubelet, count: int) -> bool:
    return len(await kubelet.pods()) == count


async def test_onsuccess_keeps_the_deployment_until_healthy_then_scales_it_to_zero(
    api: ApiServer, client: KubeClient
) -> None:
    await referencing(client, "onsuccess", 3)
    async with PodKubelet(client) as kubelet, running(api):
        kubelet.ready_cap = 2
        await eventually(lambda: _ready_replicas(client, 2), what="two of three Rollout pods available")
        await asyncio.sleep(1.0)  # passes ran on the way here
        assert await deployment_replicas(client) == 3
        kubelet.ready_cap = None
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the Rollout to be Healthy")
        await eventually(lambda: _deployment_at(client, 0), what="the Deployment scaled to zero")


async def test_never_leaves_the_deployment_alone(api: ApiServer, client: KubeClient) -> None:
    await referencing(client, "never", 2)
    async with PodKubelet(client), running(api):
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the Rollout to be Healthy")
        await asyncio.sleep(1.0)
    assert await deployment_replicas(client) == 2


async def test_an_edit_of_the_referenced_deployments_template_is_a_new_revision(
    api: ApiServer, client: KubeClient
) -> None:
    await referencing(client, "never", 2)
    async with PodKubelet(client), running(api):
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the Rollout to be Healthy")
        first = (await status(client))["stableRS"]
        # The Rollout has no template of its own: the Deployment's is the one deployed; editing it (not the
        # Rollout) must wake the controller and roll the new template out.
        await client.patch(DEPLOYMENTS, "web", NAMESPACE, {"spec": {"template": pod_template("example/web:2")}})
        await eventually(lambda: healthy_on(client, "example/web:2"), what="the Deployment's new template stable")
    assert (await status(client))["stableRS"] != first
    rollout = await client.get(rollouts(GROUP), "web", NAMESPACE)
    assert rollout is not None and "template" not in rollout["spec"], "the Rollout itself is left as written"


async def _ready_replicas(client: KubeClient, count: int) -> bool:
    return sum(int((rs.get("status") or {}).get("availableReplicas") or 0) for rs in await _rs(client)) == count


async def _deployment_at(client: KubeClient, replicas: int) -> bool:
    return await deployment_replicas(client) == replicas


async def _rs(client: KubeClient) -> list[dict[str, Any]]:
    return await client.list(REPLICA_SETS, NAMESPACE)


# --- ephemeral metadata -----------------------------------------------------------------------------------------


def _labels_of(pods: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [p["metadata"].get("labels") or {} for p in pods]


async def test_canary_pods_get_canary_metadata_and_keep_running_as_stable_after_promotion(
    api: ApiServer, client: KubeClient
) -> None:
    canary = {
        "steps": [{"setWeight": 50}, {"pause": {}}],
        "canaryMetadata": {"labels": {"role": "canary"}, "annotations": {"stage": "canary"}},
        "stableMetadata": {"labels": {"role": "stable"}},
    }
    await client.create(rollouts(GROUP), rollout_body(strategy={"canary": canary}))
    async with PodKubelet(client) as kubelet, running(api):
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the first revision")
        first = (await status(client))["stableRS"]
        await eventually(lambda: _all_labelled(kubelet, first, "stable"), what="stable metadata on the first pods")

        await new_image(client, "example/web:2")

        async def paused() -> bool:
            current = await status(client)
            return current.get("phase") == "Paused" and current.get("currentPodHash") != first

        await eventually(paused, what="the canary paused at 50%")
        second = (await status(client))["currentPodHash"]
        await eventually(lambda: _all_labelled(kubelet, second, "canary"), what="canary metadata on the canary")
        canary_pods = await kubelet.pods(second)
        assert all(p["metadata"]["annotations"].get("stage") == "canary" for p in canary_pods)
        assert all(label["role"] == "stable" for label in _labels_of(await kubelet.pods(first)))
        rs = await client.get(REPLICA_SETS, f"web-{second}", NAMESPACE)
        assert rs is not None and rs["spec"]["template"]["metadata"]["labels"]["role"] == "canary"

        await asyncio.to_thread(promote, api)
        await eventually(lambda: healthy_on(client, "example/web:2"), what="the promotion")
        await eventually(lambda: _all_labelled(kubelet, second, "stable"), what="stable metadata after promotion")
        promoted = await kubelet.pods(second)

    # The same pods, relabelled in place: none replaced, no new revision, the canary annotation gone.
    assert {p["metadata"]["uid"] for p in canary_pods} <= {p["metadata"]["uid"] for p in promoted}
    assert all("stage" not in (p["metadata"].get("annotations") or {}) for p in promoted)
    assert (await status(client))["stableRS"] == second
    rs = await client.get(REPLICA_SETS, f"web-{second}", NAMESPACE)
    assert rs is not None
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: second, "role": "stable"}
    assert "stage" not in (rs["spec"]["template"]["metadata"].get("annotations") or {})
    assert '"role": "stable"' in rs["metadata"]["annotations"][EPHEMERAL_ANNOTATION]


async def test_blue_green_preview_pods_become_active_pods_in_place(api: ApiServer, client: KubeClient) -> None:
    for role in ("active", "preview"):
        service = {"metadata": {"name": f"web-{role}", "namespace": NAMESPACE}, "spec": {"selector": {"app": "web"}}}
        await client.create(SERVICES, service)
    blue_green = {
        "activeService": "web-active",
        "previewService": "web-preview",
        "autoPromotionEnabled": False,
        "scaleDownDelaySeconds": 0,
        "previewMetadata": {"labels": {"role": "preview"}},
        "activeMetadata": {"labels": {"role": "active"}},
    }
    await client.create(rollouts(GROUP), rollout_body(strategy={"blueGreen": blue_green}))
    async with PodKubelet(client) as kubelet, running(api):
        await eventually(lambda: healthy_on(client, "example/web:1"), what="blue")
        blue = (await status(client))["stableRS"]
        await eventually(lambda: _all_labelled(kubelet, blue, "active"), what="active metadata on blue")
        await new_image(client, "example/web:2")

        async def green_previewed() -> bool:
            current = await status(client)
            green = str(current.get("currentPodHash") or "")
            return (
                current.get("phase") == "Paused"
                and green not in ("", blue)
                and await _all_labelled(kubelet, green, "preview")
            )

        await eventually(green_previewed, what="green paused with preview metadata")
        green = (await status(client))["currentPodHash"]
        previewed = {p["metadata"]["uid"] for p in await kubelet.pods(green)}
        assert await _all_labelled(kubelet, blue, "active")
        await asyncio.to_thread(promote, api)
        await eventually(lambda: _all_labelled(kubelet, green, "active"), what="green active after promotion")
        promoted = {p["metadata"]["uid"] for p in await kubelet.pods(green)}
    assert previewed <= promoted  # relabelled, not replaced


async def _all_labelled(kubelet: PodKubelet, pod_hash: str, role: str) -> bool:
    pods = await kubelet.pods(pod_hash)
    return bool(pods) and all(label.get("role") == role for label in _labels_of(pods))


# --- revisions and history --------------------------------------------------------------------------------------


async def test_replica_sets_carry_revision_numbers_and_history_is_trimmed(api: ApiServer, client: KubeClient) -> None:
    await client.create(rollouts(GROUP), rollout_body(revisionHistoryLimit=1))
    async with PodKubelet(client, startup=0.1), running(api):
        for version in range(1, 5):
            if version > 1:
                await new_image(client, f"example/web:{version}")
            image = f"example/web:{version}"
            await eventually(functools.partial(healthy_on, client, image), what=f"revision {version}")

        async def trimmed() -> bool:
            return len(await _rs(client)) == 2

        await eventually(trimmed, what="old revisions beyond revisionHistoryLimit deleted")
    numbers = sorted(int(rs["metadata"]["annotations"][REVISION_ANNOTATION]) for rs in await _rs(client))
    assert numbers == [3, 4]  # the stable revision plus revisionHistoryLimit=1 scaled-down one
    stable = (await status(client))["stableRS"]
    current = await client.get(REPLICA_SETS, f"web-{stable}", NAMESPACE)
    assert current is not None and current["metadata"]["annotations"][REVISION_ANNOTATION] == "4"


# --- restartAt ----------------------------------------------------------------------------------------------------


async def test_restart_replaces_pods_one_at_a_time_and_records_restarted_at_when_done(
    api: ApiServer, client: KubeClient
) -> None:
    replicas = 3
    await client.create(rollouts(GROUP), rollout_body(replicas=replicas))
    async with PodKubelet(client, startup=0.5) as kubelet, running(api):
        await eventually(lambda: healthy_on(client, "example/web:1"), what="the first revision")
        await eventually(lambda: _ready_replicas(client, replicas), what="every pod available")
        before = {p["metadata"]["uid"] for p in await kubelet.pods()}
        await asyncio.sleep(1.1)  # creation stamps have whole seconds: restartAt falls after every pod's
        restart_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as `kubectl argo rollouts restart`
        await client.patch(rollouts(GROUP), "web", NAMESPACE, {"spec": {"restartAt": restart_at}})
        fewest: list[int] = []

        async def done() -> bool:
            pods = await kubelet.pods()
            fewest.append(sum(1 for p in pods if (p.get("status") or {}).get("conditions")))
            return (await status(client)).get("restartedAt") is not None

        await eventually(done, timeout=40, what="status.restartedAt after the restart")
        await eventually(lambda: _pods_exist(kubelet, replicas), what="the last replacement pod")
        after = await kubelet.pods()
        stable = (await status(client))["stableRS"]

    assert not before & {p["metadata"]["uid"] for p in after}  # every pod replaced
    assert min(fewest) >= replicas - 1  # never more than one pod away
    assert all(p["metadata"]["creationTimestamp"] >= restart_at for p in after)
    assert (await status(client))["stableRS"] == stable  # no new revision: same template, same hash
