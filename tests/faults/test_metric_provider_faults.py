"""Metric providers that fail: a web metric that answers HTTP 500, one that never answers in time, Prometheus down.

A failed query is no evidence: the step analysis must error and the rollout abort back to stable, never promote
the canary on a measurement it did not get. Traffic is not the analysis's business: no request may fail meanwhile.
The three faults run side by side, one rollout each, on one daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
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


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def providers(metric: MetricEndpoint) -> dict[str, tuple[str, dict[str, Any]]]:
    """Rollout name → (fault, the provider of its analysis)."""
    prometheus = {"prometheus": {"address": f"http://127.0.0.1:{closed_port()}", "query": "vector(1)", "timeout": 1}}
    return {
        "web500": ("web metric HTTP 500", web_provider(metric.url("500"), timeout=1)),
        "webtimeout": ("web metric timeout", web_provider(metric.url("hang"), timeout=1)),
        "prometheus": ("prometheus down", prometheus),
    }


def aborted(view: dict[str, Any]) -> bool:
    return bool(view["aborted"] and view["canaryWeight"] == 0)


async def test_failing_metric_providers_abort_and_never_promote(
    daemon: DaemonProcess, metric: MetricEndpoint, record_fault: Record
) -> None:
    faults = providers(metric)
    documents: list[str] = []
    for name, (_, provider) in faults.items():
        steps: list[dict[str, Any]] = [
            {"setWeight": 30},
            {"analysis": {"templates": [{"templateName": f"check-{name}"}]}},
        ]
        documents += [manifest(name, steps=steps), template(f"check-{name}", provider, count=3, errors=0)]
    views = await deploy_all(daemon, documents, list(faults))
    loads = {name: Load(view["trafficUrl"] + "/", RATE).start() for name, view in views.items()}
    try:
        for name in faults:
            body = {"container": "app", "image": "v2"}
            await daemon.call("POST", f"/api/v1/rollouts/{name}/set-image", body, expect=200)
        waits = [daemon.wait_rollout(name, aborted, f"{name} to abort") for name in faults]
        finals = dict(zip(faults, await asyncio.gather(*waits), strict=True))
    finally:
        stats = {}
        for name, load in loads.items():
            with contextlib.suppress(Exception):
                stats[name] = await load.stop()
    for name, (fault, _) in faults.items():
        final, load = finals[name], stats[name]
        seen = "/".join(run["phase"].rsplit(".", 1)[-1] for run in final["analysisRuns"])
        outcome = f"analysis {seen}, aborted, stable still {final['stableImage']}, canary at 0%"
        record_fault(fault, sent=load.sent, failed=load.machinery_failures, outcome=outcome, load=load)
    for name, final in finals.items():
        assert final["stableImage"] == "v1" and final["phase"] == "Degraded", (name, final["message"])
        phases = [run["phase"].rsplit(".", 1)[-1].lower() for run in final["analysisRuns"]]
        assert phases and set(phases) <= {"error", "failed"}, (name, phases)
    assert {name: load.machinery_failures for name, load in stats.items()} == dict.fromkeys(faults, 0), stats
