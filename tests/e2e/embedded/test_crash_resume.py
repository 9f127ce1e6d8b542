"""Crash safety: ``kill -9`` of the controlling process mid-rollout; traffic keeps flowing; a restart resumes.

The proxy and the replicas are separate processes, so the data plane does not notice the controller dying.
The restarted controller finds the rollout at the same step with the same weights (status in SQLite), adopts
the same replica processes (no restart) and the same proxy, and carries on when told to. `headway down`
afterwards leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.embedded.harness import DaemonProcess, alive, loadgen, manifest, pids_of
from tests.faults import proxy_admin

STEPS: list[dict[str, Any]] = [{"setWeight": 40}, {"pause": {}}, {"setWeight": 80}, {"pause": {"duration": 1}}]


async def proxy_state(daemon: DaemonProcess) -> dict[str, Any]:
    endpoint = proxy_admin.endpoint(daemon.state_dir)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{endpoint['admin']}/state", headers=proxy_admin.headers(daemon.state_dir)) as response,
    ):
        state: dict[str, Any] = await response.json()
    return state


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kill_9_mid_rollout_keeps_traffic_and_resumes_at_the_same_step(daemon: DaemonProcess) -> None:
    await daemon.call("POST", "/api/v1/apply", manifest("web", steps=STEPS), expect=201)
    web = await daemon.wait_rollout("web", lambda v: v["phase"] == "Healthy" and v["readyReplicas"] >= 2, "v1")
    load = loadgen.LoadGenerator(web["trafficUrl"] + "/", rate=300)
    running = asyncio.create_task(load.run())
    try:
        await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
        before = await daemon.wait_rollout(
            "web", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 40, "the canary paused at 40%"
        )
        routing = await proxy_state(daemon)
        replicas = sorted(pids_of(daemon.state_dir))

        daemon.kill9()
        served = load.stats.completed
        await asyncio.sleep(2.0)
        assert load.stats.completed - served > 300, "traffic kept flowing while the controller was dead"
        assert await proxy_state(daemon) == routing

        await daemon.start()
        await asyncio.sleep(1.5)  # a few passes of the new controller
        after = await daemon.rollout("web")
        assert (after["phase"], after["step"], after["canaryWeight"]) == (before["phase"], before["step"], 40)
        assert after["currentHash"] == before["currentHash"] and after["stableHash"] == before["stableHash"]
        assert (await proxy_state(daemon))["weights"] == routing["weights"]
        assert sorted(pids_of(daemon.state_dir)) == replicas, "replicas and proxy were adopted, not restarted"

        await daemon.call("POST", "/api/v1/rollouts/web/promote", {"full": True}, expect=200)
        await daemon.wait_rollout(
            "web", lambda v: v["phase"] == "Healthy" and v["stableImage"] == "v2", "the promotion after the restart"
        )
    finally:
        load.stop()
        stats = await running
    print("\ncrash-resume load:", json.dumps(stats.as_dict()))
    assert stats.machinery_failures == 0, stats.as_dict()
    assert set(stats.versions) == {"v1", "v2"}

    started = pids_of(daemon.state_dir)
    await daemon.down()
    assert not [pid for pid in started if alive(pid)], "headway down left processes behind"


@pytest.mark.asyncio
async def test_a_second_instance_on_the_same_state_directory_refuses_to_start(daemon: DaemonProcess) -> None:
    second = DaemonProcess(daemon.state_dir)
    with pytest.raises(AssertionError, match="in use by another headway process"):
        await second.start(timeout=20)
    await second.close()
