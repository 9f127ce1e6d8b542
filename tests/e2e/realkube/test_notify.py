"""Notifications in Kubernetes mode (``headway controller --notify FILE``): the events of an update reach a webhook
on 127.0.0.1 as they happen, with the Rollout's namespace and name, as embedded mode's do; a receiver that fails
never holds the Rollout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.engine.notify import NotifyConfig
from headway.kube.client import KubeClient, rollouts
from tests.e2e.realkube.cluster import GROUP, RealCluster, eventually, healthy_on, rollout_body, running, set_image

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest_asyncio.fixture
async def received() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook on 127.0.0.1 keeping what it was sent; ``/broken`` answers 500."""
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({}, status=500)

    app = web.Application()
    app.add_routes([web.post("/hook", hook), web.post("/broken", broken)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", bodies
    finally:
        await runner.cleanup()


async def test_an_updates_events_reach_the_webhook_and_a_failing_one_holds_nothing(
    real_cluster: RealCluster, namespace: str, admin: KubeClient, received: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = received
    notify = NotifyConfig.parse(
        {
            "sinks": [
                {"name": "team", "url": f"{url}/hook"},
                {"name": "down", "url": f"{url}/broken", "retries": 1, "backoff_seconds": 0.1},
            ],
            "subscriptions": [{"reasons": ["*"], "sinks": ["team", "down"]}],
        }
    )
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}
    await admin.create(rollouts(GROUP), rollout_body(namespace, strategy=strategy))
    async with running(real_cluster, namespace, notify=notify) as controller:
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1"), what="revision 1 Healthy")
        start = len(bodies)  # revision 1's own events before this
        await set_image(admin, namespace, "example/web:2")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2"), what="revision 2 Healthy")

        async def heard_completion() -> bool:
            return any(body["event"]["reason"] == "RolloutCompleted" for body in bodies[start:])

        await eventually(heard_completion, what="RolloutCompleted delivered")
        assert controller.notifier is not None and controller.notifier.stats.failed >= 1  # /broken gave up
    reasons = [body["event"]["reason"] for body in bodies[start:]]
    assert {"RolloutUpdated", "RolloutStepCompleted", "RolloutCompleted"} <= set(reasons), reasons
    assert reasons.index("RolloutUpdated") < reasons.index("RolloutCompleted"), reasons
    assert [body["revision"] for body in bodies[start:]][-1] != bodies[0]["revision"]
    assert {(body["namespace"], body["rollout"]) for body in bodies} == {(namespace, "web")}
