"""``kill -9`` of the controller (the daemon) during each kind of step, then a restart, under load.

Three rollouts on one daemon, each at a different kind of step when it dies: one whose ``setWeight`` pass is
under way (the image was set a moment before), one paused at a ``pause`` step, one in an ``analysis`` step. The
proxies and the replicas are their own processes, so traffic must not notice the controller dying; the restarted
controller must find each rollout where it was (same step, same weight, the same analysis run with its
measurements) and finish it the way it would have: never promote without the step's condition met.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.faults.conftest import Record
from tests.faults.harness import (
    DaemonProcess,
    Load,
    MetricEndpoint,
    deploy_all,
    manifest,
    template,
    web_provider,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

RATE = 80.0
"""Per rollout: three rollouts share the suite's load budget."""
STEPS: dict[str, list[dict[str, Any]]] = {
    "setweight": [{"setWeight": 30}, {"pause": {}}],
    "pause": [{"setWeight": 40}, {"pause": {}}, {"setWeight": 70}],
    "analysis": [{"setWeight": 30}, {"analysis": {"templates": [{"templateName": "check"}]}}],
}


async def set_v2(daemon: DaemonProcess, name: str) -> None:
    await daemon.call("POST", f"/api/v1/rollouts/{name}/set-image", {"container": "app", "image": "v2"}, expect=200)


def promoted(view: dict[str, Any]) -> bool:
    return bool(view["phase"] == "Healthy" and view["stableImage"] == "v2" and view["canaryWeight"] == 0)


def running(view: dict[str, Any]) -> bool:
    return any(run["phase"].endswith("Running") for run in view["analysisRuns"])


async def test_controller_killed_during_set_weight_pause_and_analysis_steps(
    daemon: DaemonProcess, metric: MetricEndpoint, record_fault: Record
) -> None:
    check = template("check", web_provider(metric.url("ok")), interval="1s", count=3)
    manifests = [manifest(name, steps=steps) for name, steps in STEPS.items()]
    views = await deploy_all(daemon, [*manifests, check], list(STEPS))
    loads = {name: Load(view["trafficUrl"] + "/", RATE).start() for name, view in views.items()}
    try:
        await set_v2(daemon, "pause")
        await set_v2(daemon, "analysis")
        paused, measuring = await asyncio.gather(
            daemon.wait_rollout(
                "pause", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 40, "the canary paused at 40%"
            ),
            daemon.wait_rollout(
                "analysis", lambda v: running(v) and metric.calls["ok"] >= 1, "the step analysis to measure once"
            ),
        )
        run_name, calls = measuring["analysisRuns"][0]["name"], metric.calls["ok"]
        await set_v2(daemon, "setweight")
        daemon.kill9()  # the pass that creates the canary and sets 30% is under way, or about to be
        await asyncio.sleep(0.5)
        await daemon.start()

        at_30 = await daemon.wait_rollout(
            "setweight", lambda v: v["phase"] == "Paused" and v["canaryWeight"] == 30, "the restarted one at 30%"
        )
        await asyncio.sleep(1.0)  # passes of the new controller: a pause must hold, not be taken as done
        held = await daemon.rollout("pause")
        for name in ("setweight", "pause"):
            await daemon.call("POST", f"/api/v1/rollouts/{name}/promote", {}, expect=200)
        waits = [daemon.wait_rollout(name, promoted, f"{name} to be promoted") for name in STEPS]
        finals = dict(zip(STEPS, await asyncio.gather(*waits), strict=True))
    finally:
        stats = {}
        for name, load in loads.items():
            with contextlib.suppress(Exception):
                stats[name] = await load.stop()
    runs = [run["name"] for run in finals["analysis"]["analysisRuns"]]
    outcomes = {
        "setweight": f"resumed at step {at_30['step']} (30%), promoted v2 after the pause",
        "pause": f"pause held at step {held['step']} ({held['canaryWeight']}%), promoted on promote",
        "analysis": f"same run resumed ({calls} then {metric.calls['ok']} measurements), promoted when it passed",
    }
    for name, outcome in outcomes.items():
        load = stats[name]
        record_fault(
            f"controller kill -9 during {name}",
            sent=load.sent,
            failed=load.machinery_failures,
            outcome=outcome,
            load=load,
        )
    assert (held["phase"], held["step"], held["canaryWeight"]) == ("Paused", paused["step"], 40), held
    assert runs == [run_name], "the restarted controller carried on with the same run"
    assert metric.calls["ok"] == 3, "three measurements in all: none repeated, none skipped"
    assert all(promoted(view) for view in finals.values())
    assert {name: load.machinery_failures for name, load in stats.items()} == dict.fromkeys(STEPS, 0), stats
