"""``kill -9`` of the controller (the daemon) during each kind of step, then a restart, under load.

The proxy and the replicas are their own processes, so traffic must not notice the controller dying; the
restarted controller must find the rollout where it was (same step, same weight, the same analysis run with its
measurements) and finish it the way it would have: never promote without the step's condition met.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.faults.conftest import Record
from tests.faults.harness import (
    DaemonProcess,
    MetricEndpoint,
    deploy,
    loaded,
    manifest,
    running_daemon,
    template,
    web_provider,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    async for process in running_daemon(tmp_path):
        yield process


@pytest_asyncio.fixture
async def metric() -> AsyncIterator[MetricEndpoint]:
    endpoint = MetricEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.close()


SET_IMAGE = {"container": "app", "image": "v2"}


async def set_v2(daemon: DaemonProcess) -> None:
    await daemon.call("POST", "/api/v1/rollouts/web/set-image", SET_IMAGE, expect=200)


def promoted(view: dict[str, Any]) -> bool:
    return bool(view["phase"] == "Healthy" and view["stableImage"] == "v2" and view["canaryWeight"] == 0)


async def test_controller_killed_during_a_set_weight_step(daemon: DaemonProcess, record_fault: Record) -> None:
    web = await deploy(daemon, manifest("web", steps=[{"setWeight": 30}, {"pause": {}}]))
    async with loaded(web["trafficUrl"] + "/") as load:
        await set_v2(daemon)
        daemon.kill9()  # the pass that creates the canary and sets 30% is under way, or about to be
        await asyncio.sleep(0.5)
        await daemon.start()
        paused = await daemon.wait_rollout(
            "web", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 30, "the restarted controller at 30%"
        )
        await daemon.call("POST", "/api/v1/rollouts/web/promote", {}, expect=200)
        final = await daemon.wait_rollout("web", promoted, "the promotion after the restart")
    outcome = f"resumed at step {paused['step']} (30%), promoted v2 after the pause: {final['phase']}"
    record_fault(
        "controller kill -9 during setWeight",
        sent=load.stats.sent,
        failed=load.machinery,
        outcome=outcome,
        load=load.stats,
    )
    assert load.machinery == 0, load.stats.as_dict()


async def test_controller_killed_during_a_pause_step(daemon: DaemonProcess, record_fault: Record) -> None:
    web = await deploy(daemon, manifest("web", steps=[{"setWeight": 40}, {"pause": {}}, {"setWeight": 70}]))
    async with loaded(web["trafficUrl"] + "/") as load:
        await set_v2(daemon)
        before = await daemon.wait_rollout(
            "web", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 40, "the canary paused at 40%"
        )
        daemon.kill9()
        await asyncio.sleep(0.5)
        await daemon.start()
        await asyncio.sleep(1.0)  # passes of the new controller: a pause must hold, not be taken as done
        after = await daemon.rollout("web")
        held = (after["phase"], after["step"], after["canaryWeight"]) == ("Paused", before["step"], 40)
        await daemon.call("POST", "/api/v1/rollouts/web/promote", {}, expect=200)
        final = await daemon.wait_rollout("web", promoted, "the promotion after the restart")
    outcome = f"pause held at step {after['step']} ({after['canaryWeight']}%), promoted on promote: {final['phase']}"
    record_fault(
        "controller kill -9 during pause", sent=load.stats.sent, failed=load.machinery, outcome=outcome, load=load.stats
    )
    assert held, (before, after)
    assert load.machinery == 0, load.stats.as_dict()


async def test_controller_killed_during_an_analysis_step(
    daemon: DaemonProcess, metric: MetricEndpoint, record_fault: Record
) -> None:
    steps = [{"setWeight": 30}, {"analysis": {"templates": [{"templateName": "check"}]}}]
    check = template("check", web_provider(metric.url), interval="1s", count=3)
    web = await deploy(daemon, manifest("web", steps=steps), check)
    async with loaded(web["trafficUrl"] + "/") as load:
        await set_v2(daemon)
        running = await daemon.wait_rollout(
            "web",
            lambda v: any(r["phase"].endswith("Running") for r in v["analysisRuns"]) and metric.calls >= 1,
            "the step analysis to measure once",
        )
        run_name = running["analysisRuns"][0]["name"]
        daemon.kill9()
        calls = metric.calls
        await asyncio.sleep(0.5)
        await daemon.start()
        final = await daemon.wait_rollout("web", promoted, "the analysis to finish and v2 to be promoted")
    names = [r["name"] for r in final["analysisRuns"]]
    outcome = f"same run {run_name} resumed ({calls} then {metric.calls} measurements), v2 promoted when it passed"
    record_fault(
        "controller kill -9 during analysis",
        sent=load.stats.sent,
        failed=load.machinery,
        outcome=outcome,
        load=load.stats,
    )
    assert names == [run_name], "the restarted controller carried on with the same run"
    assert metric.calls == 3, "three measurements in all: none repeated, none skipped"
    assert load.machinery == 0, load.stats.as_dict()
