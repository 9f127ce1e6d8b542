"""An unexpected exception in a pass is an error on the Rollout, not only a line in the controller's log: a
``ReconcileError`` Warning Event naming it, once per distinct error however often the pass is retried."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from headway.bootstrap import kubernetes as wiring
from headway.kube.client import EVENTS, KubeClient, rollouts
from headway.runtimes.kubernetes import controller as controller_module
from headway.stores.k8s_status import KubernetesStatusStore
from tests.e2e.realkube.cluster import GROUP, RealCluster, eventually, rollout_body, running

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_an_unexpected_exception_is_a_warning_on_the_rollout_once(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise RuntimeError("the engine factory broke")

    monkeypatch.setattr(wiring, "engine_for", broken)
    monkeypatch.setattr(controller_module, "RETRY_AFTER_ERROR", 0.3)
    await admin.create(rollouts(GROUP), rollout_body(namespace))

    async def reported() -> list[dict[str, Any]]:
        return [e for e in await admin.list(EVENTS, namespace) if e.get("reason") == "ReconcileError"]

    async with running(real_cluster, namespace):
        await eventually(reported, what="a ReconcileError Event on the Rollout")
        retried = len(calls)
        while len(calls) < retried + 3:  # retried several times since
            await asyncio.sleep(0.1)
    [event] = await reported()
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "web"
    assert "RuntimeError: the engine factory broke" in event["message"]


async def test_an_unexpected_exception_while_refusing_an_invalid_rollout_is_reported_not_skipped(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the ``InvalidSpec`` refusal can fail like any pass: only a conflict (a newer Rollout is on its way)
    is deferred quietly; anything else is the same ``ReconcileError`` as a failed pass, not an info log line."""

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the status store broke")

    monkeypatch.setattr(KubernetesStatusStore, "save", broken)
    unknown = {"canary": {"trafficRouting": {"plugins": {"example.com/unknown": {}}}, "steps": [{"setWeight": 20}]}}
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=unknown))

    async def reported() -> list[dict[str, Any]]:
        return [e for e in await admin.list(EVENTS, namespace) if e.get("reason") == "ReconcileError"]

    async with running(real_cluster, namespace):
        await eventually(reported, what="a ReconcileError Event on the invalid Rollout")
    [event] = await reported()
    assert "RuntimeError: the status store broke" in event["message"]
