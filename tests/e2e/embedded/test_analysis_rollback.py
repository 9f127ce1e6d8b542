"""The example rollout's judge at work: a bad canary (30% errors) is rolled back by the analysis, on its own.

The judge compares the canary with stable from the proxy's own counters, so no Prometheus is involved; the only
failed requests are the bad version's own, and its exposure stays small.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from headway.cli.demo import manifest
from tests.e2e.embedded.harness import DaemonProcess, loadgen


@pytest.mark.asyncio
async def test_the_judge_rolls_back_a_bad_canary(daemon: DaemonProcess) -> None:
    await daemon.call("POST", "/api/v1/apply", manifest(), expect=201)
    demo = await daemon.wait_rollout("demo", lambda v: v["phase"] == "Healthy" and v["readyReplicas"] >= 2, "v1")
    load = loadgen.LoadGenerator(demo["trafficUrl"] + "/", rate=150)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(1.0)
        await daemon.call("POST", "/api/v1/rollouts/demo/set-image", {"container": "app", "image": "v3"}, expect=200)
        aborted = await daemon.wait_rollout("demo", lambda v: v["aborted"], "the judge to abort v3", timeout=45)
        await daemon.wait_rollout("demo", lambda v: v["canaryWeight"] == 0, "traffic back on v1")
    finally:
        load.stop()
        stats = await running
    print("\njudge rollback:", json.dumps(stats.as_dict()), aborted["message"])
    assert "Background analysis run" in aborted["message"] and "e-value" in aborted["message"]
    [run] = [run for run in aborted["analysisRuns"] if run["phase"] == "Failed"]
    assert run["name"].startswith("demo-")
    assert stats.machinery_failures == 0, stats.as_dict()
    assert set(stats.version_errors) == {"v3"}
    assert stats.versions["v3"] < stats.versions["v1"] / 4, "the bad version's exposure stayed small"
