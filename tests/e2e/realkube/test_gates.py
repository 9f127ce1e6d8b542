"""``spec.webhooks`` gates on a real API server: the Rollout CRD of ``deploy/base`` keeps the field (a schema that
pruned it would promote past every gate), and a confirm-promotion gate that answers "not yet" holds the canary at
the end of its steps until it says yes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.kube.client import EVENTS, KubeClient, rollouts
from tests.e2e.realkube.cluster import (
    GROUP,
    RealCluster,
    available_by_image,
    eventually,
    healthy_on,
    rollout_body,
    running,
    set_image,
    status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest_asyncio.fixture
async def gate() -> AsyncIterator[dict[str, Any]]:
    """A confirm-promotion webhook on 127.0.0.1: 503 ("not yet") until the test sets ``open``."""
    state: dict[str, Any] = {"open": False, "calls": 0}

    async def answer(request: web.Request) -> web.Response:
        state["calls"] += 1
        return web.json_response({}, status=200 if state["open"] else 503)

    app = web.Application()
    app.router.add_post("/gate", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}/gate"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_a_confirm_promotion_gate_holds_the_canary_until_it_says_yes(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, gate: dict[str, Any]
) -> None:
    body = rollout_body(namespace, strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}})
    body["spec"]["webhooks"] = [
        {"name": "ask-the-team", "type": "confirm-promotion", "url": gate["url"], "intervalSeconds": 1}
    ]
    created = await admin.create(rollouts(GROUP), body)
    assert created["spec"].get("webhooks"), "the Rollout CRD pruned spec.webhooks"

    async with running(real_cluster, namespace):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 healthy")
        stable = (await status(admin, namespace)).get("stableRS")
        await set_image(admin, namespace, "example/web:2")

        async def asked_again() -> bool:
            return int(gate["calls"]) >= 3  # past the 1 s pause, asked (and told no) interval after interval

        await eventually(asked_again, what="the gate asked again after a no")
        held = await status(admin, namespace)
        assert (held.get("stableRS"), held.get("currentStepIndex")) == (stable, 1), held
        assert await available_by_image(admin, namespace) == {"example/web:1": 1, "example/web:2": 1}
        assert not await healthy_on(admin, namespace, "example/web:2")

        gate["open"] = True
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="promoted once it says yes")

    failed = [event for event in await admin.list(EVENTS, namespace) if event.get("reason") == "ActionFailed"]
    assert failed == []
