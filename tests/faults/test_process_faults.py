"""The data plane's processes failing mid-canary, under load: an app replica killed, the proxy killed, the proxy
frozen.

A killed replica is restarted by the platform and its requests are retried by the proxy once on another replica
(of stable, when the canary has no other): no request fails. A killed proxy *is* the data plane, so requests
fail until the controller starts it again, on the same port with the weights it had (its state file): the outage
is measured and bounded. A frozen proxy stalls the controller's pass on its admin API, which must not stall the
controller's own API: ``/healthz`` and the list keep answering at once (issue #10 case 6, end to end).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.embedded.harness import alive
from tests.faults import proxy_admin
from tests.faults.conftest import Record
from tests.faults.harness import DaemonProcess, deploy, loaded, manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
ANSWER_WITHIN = 0.3
"""Seconds for the daemon's API while its pass is stuck: generous for a shared CI core (the unit test asks 0.2)."""


async def canary_at_50(daemon: DaemonProcess) -> dict[str, Any]:
    await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
    return await daemon.wait_rollout(
        "web", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 50, "the canary paused at 50%"
    )


async def finish(daemon: DaemonProcess) -> dict[str, Any]:
    await daemon.call("POST", "/api/v1/rollouts/web/promote", {}, expect=200)
    return await daemon.wait_rollout(
        "web", lambda v: v["phase"] == "Healthy" and v["stableImage"] == "v2", "v2 to be promoted"
    )


def replica_pids(state_dir: Path) -> dict[str, list[int]]:
    """The running replicas' PIDs by revision hash, from the platform's own record."""
    data = json.loads((state_dir / "platform.json").read_text())
    return {r["hash"]: [p["pid"] for p in r["replicas"] if p.get("pid")] for r in data["revisions"]}


async def admin_state(daemon: DaemonProcess) -> dict[str, Any]:
    admin = proxy_admin.endpoint(daemon.state_dir)["admin"]
    auth = proxy_admin.headers(daemon.state_dir)  # the proxy's admin API takes the instance's token
    async with aiohttp.ClientSession() as session, session.get(f"http://{admin}/state", headers=auth) as response:
        state: dict[str, Any] = await response.json()
    return state


async def test_an_app_replica_killed_mid_canary(daemon: DaemonProcess, record_fault: Record) -> None:
    web = await deploy(daemon, manifest("web", steps=STEPS))
    async with loaded(web["trafficUrl"] + "/") as load:
        paused = await canary_at_50(daemon)
        pids = replica_pids(daemon.state_dir)
        victims = pids[paused["currentHash"]][:1]  # the canary's only replica at 50% of 2
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        await daemon.wait_rollout(
            "web",
            lambda v: (
                v["readyReplicas"] >= 2
                and not set(victims) & {p for ps in replica_pids(daemon.state_dir).values() for p in ps}
            ),
            "the killed replicas to be replaced",
        )
        still = await daemon.rollout("web")
        final = await finish(daemon)
    outcome = f"replaced; rollout held at {still['canaryWeight']}% ({still['phase']}), then promoted: {final['phase']}"
    record_fault(
        "app replica kill -9 (the canary's only one)",
        sent=load.stats.sent,
        failed=load.machinery,
        outcome=outcome,
        load=load.stats,
    )
    assert (still["phase"], still["canaryWeight"]) == ("Paused", 50), "a crash is no reason to move a step"
    assert load.machinery == 0, load.stats.as_dict()


async def test_the_proxy_killed_mid_canary_comes_back_with_its_weights(
    daemon: DaemonProcess, record_fault: Record
) -> None:
    web = await deploy(daemon, manifest("web", steps=STEPS))
    async with loaded(web["trafficUrl"] + "/") as load:
        await canary_at_50(daemon)
        before = await admin_state(daemon)
        old = proxy_admin.endpoint(daemon.state_dir)
        os.kill(old["pid"], signal.SIGKILL)
        killed = time.monotonic()

        def restarted() -> bool:
            try:
                now = proxy_admin.endpoint(daemon.state_dir)
            except (OSError, ValueError):
                return False
            return now["pid"] != old["pid"] and alive(now["pid"])

        async def back() -> bool:
            return restarted()

        for _ in range(200):
            if await back():
                break
            await asyncio.sleep(0.05)
        after = await admin_state(daemon)
        new = proxy_admin.endpoint(daemon.state_dir)
        served = load.stats.completed
        await asyncio.sleep(1.0)
        serving_again = load.stats.completed - served
        final = await finish(daemon)
    gap = time.monotonic() - killed
    outcome = (
        f"restarted on {new['listen']} (same port) with the same weights; outage {load.stats.downtime():.1f} s; "
        f"then promoted: {final['phase']}"
    )
    record_fault(
        "proxy kill -9 mid-canary", sent=load.stats.sent, failed=load.machinery, outcome=outcome, load=load.stats
    )
    assert new["listen"] == old["listen"] and new["pid"] != old["pid"]
    assert after["weights"] == before["weights"] and after["stable"] == before["stable"]
    assert serving_again > 100, "traffic flows again through the new proxy"
    assert load.stats.downtime() < 5.0, (gap, load.stats.as_dict())


async def test_a_frozen_proxy_does_not_freeze_the_controller_api(daemon: DaemonProcess, record_fault: Record) -> None:
    web = await deploy(daemon, manifest("web", steps=STEPS))
    async with loaded(web["trafficUrl"] + "/", rate=100) as load:
        await canary_at_50(daemon)
        proxy = proxy_admin.endpoint(daemon.state_dir)
        os.kill(proxy["pid"], signal.SIGSTOP)
        slowest = 0.0
        try:
            await daemon.call("POST", "/api/v1/rollouts/web/pause", {}, expect=200)  # wakes a pass now
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                for path in ("/healthz", "/api/v1/rollouts"):
                    started = time.monotonic()
                    await daemon.call("GET", path)
                    slowest = max(slowest, time.monotonic() - started)
                await asyncio.sleep(0.05)
        finally:
            os.kill(proxy["pid"], signal.SIGCONT)
        await daemon.call("POST", "/api/v1/rollouts/web/resume", {}, expect=200)
        final = await finish(daemon)
    outcome = (
        f"API answered within {slowest * 1000:.0f} ms while the proxy was stopped 2.5 s; promoted: {final['phase']}"
    )
    record_fault(
        "proxy frozen (SIGSTOP 2.5 s)", sent=load.stats.sent, failed=load.machinery, outcome=outcome, load=load.stats
    )
    assert slowest < ANSWER_WITHIN, slowest
    assert proxy_admin.endpoint(daemon.state_dir)["pid"] == proxy["pid"], "a stopped proxy is not replaced under it"
