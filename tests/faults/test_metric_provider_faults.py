"""Metric providers that fail: a web metric that answers HTTP 500 or never answers in time, Prometheus down.

A failed query is no evidence: the step analysis must error and the rollout abort back to stable, never promote
the canary on a measurement it did not get. Traffic is not the analysis's business: no request may fail meanwhile.
"""

from __future__ import annotations

import socket
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


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def provider_for(fault: str, metric: MetricEndpoint) -> dict[str, Any]:
    if fault == "prometheus down":
        return {"prometheus": {"address": f"http://127.0.0.1:{closed_port()}", "query": "vector(1)", "timeout": 1}}
    metric.mode = {"web metric HTTP 500": "500", "web metric timeout": "hang"}[fault]
    return web_provider(metric.url, timeout=1)


@pytest.mark.parametrize("fault", ["web metric HTTP 500", "web metric timeout", "prometheus down"])
async def test_a_failing_metric_provider_aborts_and_never_promotes(
    fault: str, daemon: DaemonProcess, metric: MetricEndpoint, record_fault: Record
) -> None:
    steps = [{"setWeight": 30}, {"analysis": {"templates": [{"templateName": "check"}]}}]
    check = template("check", provider_for(fault, metric), interval="500ms", count=3, errors=0)
    web = await deploy(daemon, manifest("web", steps=steps), check)
    async with loaded(web["trafficUrl"] + "/") as load:
        await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
        final = await daemon.wait_rollout(
            "web", lambda v: v["aborted"] and v["canaryWeight"] == 0, "the rollout to abort on the errored analysis"
        )
    runs = [f"{r['phase'].rsplit('.', 1)[-1]}" for r in final["analysisRuns"]]
    outcome = f"analysis {'/'.join(runs)}, aborted, stable still {final['stableImage']}, canary at 0%"
    record_fault(fault, sent=load.stats.sent, failed=load.machinery, outcome=outcome, load=load.stats)
    assert final["stableImage"] == "v1" and final["phase"] == "Degraded", final["message"]
    assert runs and all(phase.lower() in ("error", "failed") for phase in runs), runs
    assert load.machinery == 0, load.stats.as_dict()
