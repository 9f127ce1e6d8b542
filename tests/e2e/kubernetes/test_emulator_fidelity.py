"""The fidelity emulator behaves as the real API server where the controller depends on it.

A patch that changes nothing (the same labels, the same status, the same /scale size) is not a write on the real
server: the resourceVersion stays and watchers are told nothing (tests/e2e/realkube/test_api_semantics.py checks
the real server says so). An emulator that bumped the version and sent a MODIFIED event for it would wake the
controller on its own no-op writes and hide a busy loop that a cluster does not have, or show one it does not.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from headway.kube.client import KubeClient, rollouts
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body

pytestmark = pytest.mark.asyncio
ROLLOUTS = rollouts(GROUP)


async def _version(client: KubeClient) -> str:
    found = await client.get(ROLLOUTS, "web", "default")
    assert found is not None
    return str(found["metadata"]["resourceVersion"])


async def test_a_patch_that_changes_nothing_keeps_the_resource_version(api: ApiServer, client: KubeClient) -> None:
    await client.create(ROLLOUTS, {**rollout_body(), "metadata": {"name": "web", "namespace": "default"}})
    await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "a"}}})
    await client.patch(ROLLOUTS, "web", "default", {"status": {"phase": "Healthy"}}, status=True)
    before = await _version(client)
    await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "a"}}})
    await client.patch(ROLLOUTS, "web", "default", {"status": {"phase": "Healthy"}}, status=True)
    await client.patch(ROLLOUTS, "web", "default", {"status": {"phase": "Degraded"}})  # the main path ignores it
    scale = f"{api.url}/apis/{GROUP}/v1alpha1/namespaces/default/rollouts/web/scale"
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(scale, data=json.dumps({"spec": {"replicas": 2}}), headers=headers) as answer:
            assert answer.status == 200, await answer.text()  # the size it has: a no-op
    assert await _version(client) == before
    await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "b"}}})
    assert await _version(client) != before


async def test_a_patch_that_changes_nothing_sends_no_watch_event(api: ApiServer, client: KubeClient) -> None:
    await client.create(ROLLOUTS, {**rollout_body(), "metadata": {"name": "web", "namespace": "default"}})
    await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "a"}}})
    url = f"{api.url}/apis/{GROUP}/v1alpha1/namespaces/default/rollouts?watch=true"
    async with aiohttp.ClientSession() as session, session.get(url) as watch:
        await asyncio.sleep(0.2)  # the watch is registered before the writes
        await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "a"}}})  # no change
        await client.patch(ROLLOUTS, "web", "default", {"metadata": {"labels": {"team": "b"}}})  # a change
        events: list[dict[str, Any]] = []
        while not any(e["type"] == "MODIFIED" for e in events):
            line = await asyncio.wait_for(watch.content.readline(), 10)
            events.append(json.loads(line))
    modified = [e for e in events if e["type"] == "MODIFIED"]
    assert modified[0]["object"]["metadata"]["labels"]["team"] == "b"  # the no-op before it sent nothing
