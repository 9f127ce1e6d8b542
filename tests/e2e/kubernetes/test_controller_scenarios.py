"""Whole rollouts through the controller, against the fidelity emulator over real HTTP, kopf embedded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from headway.kube.client import (
    EVENTS,
    REPLICA_SETS,
    SERVICES,
    KubeClient,
    analysis_runs,
    analysis_templates,
    rollouts,
)
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import (
    GROUP,
    Kubelet,
    canary_weight,
    eventually,
    install,
    promote,
    rollout_body,
    running,
    status,
)

pytestmark = pytest.mark.asyncio


async def _healthy_on(client: KubeClient, image: str) -> bool:
    current = await status(client)
    if current.get("phase") != "Healthy" or not current.get("stableRS"):
        return False
    rs = await client.get(REPLICA_SETS, f"web-{current['stableRS']}", "default")
    return rs is not None and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image


async def _new_image(client: KubeClient, image: str) -> None:
    template = rollout_body(image=image)["spec"]["template"]
    await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})


async def test_a_canary_goes_through_gateway_api_from_first_step_to_promotion(
    api: ApiServer, client: KubeClient
) -> None:
    await install(client)
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "1s"}},
        {"setWeight": 60},
        {"pause": {"duration": "1s"}},
    ]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))
    seen: list[int | None] = []

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy_on(client, "example/web:1"), what="the first revision to be stable")
        await _new_image(client, "example/web:2")

        async def promoted() -> bool:
            weight = await canary_weight(client)
            if not seen or seen[-1] != weight:
                seen.append(weight)
            return await _healthy_on(client, "example/web:2")

        await eventually(promoted, timeout=30, what="the canary to be promoted")

    assert 20 in seen and 60 in seen
    assert seen.index(20) < seen.index(60)
    assert await canary_weight(client) == 0  # everything on the (new) stable
    stable = await client.get(SERVICES, "web-stable", "default")
    assert stable is not None
    assert stable["spec"]["selector"]["rollouts-pod-template-hash"] == (await status(client))["stableRS"]


async def test_an_abort_returns_all_traffic_to_stable(api: ApiServer, client: KubeClient) -> None:
    await install(client)
    await client.create(rollouts(GROUP), rollout_body(steps=[{"setWeight": 30}, {"pause": {}}]))

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy_on(client, "example/web:1"), what="the first revision")
        await _new_image(client, "example/web:2")

        async def paused_at_30() -> bool:
            return await canary_weight(client) == 30 and (await status(client)).get("phase") == "Paused"

        await eventually(paused_at_30, what="the canary paused at 30%")
        current = await client.get(rollouts(GROUP), "web", "default")
        assert current is not None
        await client.patch(
            rollouts(GROUP),
            "web",
            "default",
            {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "status": {"abort": True}},
            status=True,
        )

        async def aborted() -> bool:
            return await canary_weight(client) == 0 and (await status(client)).get("phase") == "Degraded"

        await eventually(aborted, what="the abort to take traffic back")

    assert await _healthy_on(client, "example/web:1") is False  # degraded, still serving the old revision
    assert (await status(client))["stableRS"]


async def test_blue_green_switches_the_active_service_on_promotion(api: ApiServer, client: KubeClient) -> None:
    await install(client, services=("active", "preview"))
    blue_green = {
        "activeService": "web-active",
        "previewService": "web-preview",
        "autoPromotionEnabled": True,
        "scaleDownDelaySeconds": 0,
    }
    await client.create(rollouts(GROUP), rollout_body(blueGreen=blue_green))

    async def active_on(image: str) -> bool:
        service = await client.get(SERVICES, "web-active", "default")
        pinned = (service or {}).get("spec", {}).get("selector", {}).get("rollouts-pod-template-hash")
        if not pinned:
            return False
        rs = await client.get(REPLICA_SETS, f"web-{pinned}", "default")
        return rs is not None and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image

    async with Kubelet(client), running(api):
        await eventually(lambda: active_on("example/web:1"), what="blue to be active")
        await _new_image(client, "example/web:2")
        await eventually(lambda: active_on("example/web:2"), timeout=30, what="green to be active")


async def test_a_restarted_controller_resumes_the_rollout_where_it_was(api: ApiServer, client: KubeClient) -> None:
    await install(client)
    steps: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async with Kubelet(client):
        async with running(api):
            await eventually(lambda: _healthy_on(client, "example/web:1"), what="the first revision")
            await _new_image(client, "example/web:2")

            async def paused_at(weight: int) -> bool:
                return await canary_weight(client) == weight and (await status(client)).get("phase") == "Paused"

            await eventually(lambda: paused_at(25), what="the first pause")
        step_before = (await status(client)).get("currentStepIndex")
        replica_sets_before = {rs["metadata"]["name"] for rs in await client.list(REPLICA_SETS, "default")}

        async with running(api, identity="second-replica"):
            await asyncio.to_thread(promote, api)  # as `headway promote` does: a conditional status write
            await eventually(lambda: paused_at(75), what="the next step after resuming")

    assert step_before == 1
    assert {rs["metadata"]["name"] for rs in await client.list(REPLICA_SETS, "default")} == replica_sets_before


async def test_an_invalid_rollout_gets_a_condition_and_an_event_not_a_crash_loop(
    api: ApiServer, client: KubeClient
) -> None:
    body = rollout_body()
    body["spec"]["strategy"]["canary"]["trafficRouting"] = {"plugins": {"example.com/unknown": {}}}
    await client.create(rollouts(GROUP), body)

    async with running(api) as controller:

        async def marked() -> bool:
            conditions = (await status(client)).get("conditions") or []
            return any(c["type"] == "InvalidSpec" for c in conditions)

        await eventually(marked, what="the InvalidSpec condition")
        message = next(c for c in (await status(client))["conditions"] if c["type"] == "InvalidSpec")["message"]
        assert "example.com/unknown" in message
        current = await client.get(rollouts(GROUP), "web", "default")
        assert current is not None  # seen and refused: `headway status` fails at once instead of waiting
        # An integer in headway.dev, as kstatus reads it (Argo's group keeps Argo's string).
        assert current["status"]["observedGeneration"] == current["metadata"]["generation"]
        stalled = next(c for c in current["status"]["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
        events = [e for e in await client.list(EVENTS, "default") if e["reason"] == "InvalidSpec"]
        assert len(events) == 1
        passes = len(controller.latencies)

        await install(client)
        plugins = {"example.com/unknown": None, "argoproj-labs/gatewayAPI": {"httpRoute": "web"}}
        fix = {"spec": {"strategy": {"canary": {"trafficRouting": {"plugins": plugins}}}}}
        await client.patch(rollouts(GROUP), "web", "default", fix)

        async def cleared() -> bool:
            current = await status(client)
            return not any(c["type"] == "InvalidSpec" for c in current.get("conditions") or []) and bool(
                current.get("stableRS")
            )

        await eventually(cleared, what="the condition to clear once the spec is fixed")
    assert passes == 0  # the invalid spec was never reconciled, nor retried in a loop
    assert len([e for e in await client.list(EVENTS, "default") if e["reason"] == "InvalidSpec"]) == 1


async def test_a_failed_analysis_run_rolls_the_canary_back(api: ApiServer, client: KubeClient) -> None:
    """Whoever writes the run's phase (here the test, as Argo's analysis controller would), the rollout acts on it."""
    await install(client)
    slow = {"name": "success-rate", "initialDelay": "1h", "provider": {"web": {"url": "http://127.0.0.1:9/"}}}
    template = {"metadata": {"name": "success-rate", "namespace": "default"}, "spec": {"metrics": [slow]}}
    await client.create(analysis_templates(GROUP), template)
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
        {"setWeight": 60},
    ]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy_on(client, "example/web:1"), what="the first revision")
        await _new_image(client, "example/web:2")

        async def one_run() -> bool:
            return len(await client.list(analysis_runs(GROUP), "default")) == 1

        await eventually(one_run, what="the step's AnalysisRun")
        (run,) = await client.list(analysis_runs(GROUP), "default")
        assert run["metadata"]["ownerReferences"][0]["name"] == "web"
        assert [metric["name"] for metric in run["spec"]["metrics"]] == ["success-rate"]
        # What the analysis executor reports when the canary's error rate is too high:
        failed = {"status": {"phase": "Failed", "message": "error rate 9% > 1%"}}
        await client.patch(analysis_runs(GROUP), run["metadata"]["name"], "default", failed, status=True)

        async def rolled_back() -> bool:
            current = await status(client)
            return current.get("abort") is True and await canary_weight(client) == 0

        await eventually(rolled_back, what="the rollback")

    assert "error rate 9%" in (await status(client))["message"]
