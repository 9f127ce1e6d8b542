"""The MetricProvider contract, run against every provider with real backends.

Each provider gets a harness: a metric that measures a known value, one whose query fails, and a few that are
broken in the ways users break them. The contract: success is a value, failure is an error message, broken
input is an error message too (never an exception), every answer is exactly one of value/error/pending,
cancel is idempotent, and polling a handle the provider never issued is an error. Prometheus runs against a
real server (skipped locally without the binary, a failure under CI), web against a real HTTP server, job
with real ``sh -c`` processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.job import LocalJobProvider
from headway.providers.prometheus import PrometheusProvider
from headway.providers.registry import default_registry, provider_type
from headway.providers.static import StaticProvider
from headway.providers.web import WebProvider
from headway.spec.analysis import Metric
from tests.e2e.prometheus import server
from tests.unit.providers.servers import serve


def metric(name: str, provider: dict[str, Any]) -> Metric:
    return Metric.model_validate({"name": name, "provider": provider})


@dataclass
class Harness:
    """One provider and the metrics that exercise it."""

    provider: MetricProvider
    good: Metric
    expected: object
    bad: Metric
    broken: list[Metric] = field(default_factory=list)
    context: MeasureContext = field(
        default_factory=lambda: MeasureContext(args={}, now=datetime.now(UTC), run_name="contract")
    )


def job(name: str, script: str | None) -> Metric:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if script is not None:
        container["command"] = ["sh", "-c", script]
    spec = {"backoffLimit": 0, "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}}
    return metric(name, {"job": {"spec": spec}})


def static_harness() -> Harness:
    return Harness(
        provider=StaticProvider(),
        good=metric("good", {"plugin": {"static": {"values": [{"wait": 1}, 0.97]}}}),
        expected=0.97,
        bad=metric("bad", {"plugin": {"static": {"values": [{"error": "scrape failed"}]}}}),
        broken=[metric("empty", {"plugin": {"static": {"values": []}}})],
    )


def job_harness() -> Harness:
    return Harness(
        provider=LocalJobProvider(grace_period=0.5),
        good=job("good", "exit 0"),
        expected=1,
        bad=job("bad", "echo nope >&2; exit 2"),
        broken=[job("no-command", None), metric("no-template", {"job": {"spec": {"backoffLimit": 1}}})],
    )


async def ok(_: web.Request) -> web.Response:
    return web.json_response({"data": {"ok": 0.97}})


async def down(_: web.Request) -> web.Response:
    return web.Response(status=500, text="down")


def web_harness(base: str) -> Harness:
    return Harness(
        provider=WebProvider(),
        good=metric("good", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data.ok}"}}),
        expected=0.97,
        bad=metric("bad", {"web": {"url": f"{base}/down"}}),
        broken=[
            metric("no-url", {"web": {"url": "nope"}}),
            metric("filter", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data[?(@.ok)]}"}}),
            metric("missing", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data.nothing}"}}),
        ],
    )


def prometheus_harness(data: server.Backfill) -> Harness:
    return Harness(
        provider=PrometheusProvider(default_address=data.url),
        good=metric("good", {"prometheus": {"query": 'headway_success_rate{revision="canary"}'}}),
        expected=[0.95],
        bad=metric("bad", {"prometheus": {"query": "sum(rate(x[1m])"}}),
        broken=[
            metric("no-scheme", {"prometheus": {"query": "up", "address": "prometheus:9090"}}),
            metric("sigv4", {"prometheus": {"query": "up", "authentication": {"sigv4": {"region": "x"}}}}),
            metric("range", {"prometheus": {"query": "up", "rangeQuery": {"start": "soon", "step": "1m"}}}),
        ],
        context=MeasureContext(args={}, now=data.at, run_name="contract"),
    )


@pytest.fixture(scope="session")
def contract_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.Backfill]:
    process, data = server.backfilled(tmp_path_factory.mktemp("contract-prometheus"))
    try:
        yield data
    finally:
        process.stop()


PROVIDERS = ["static", "job", "web", "prometheus"]


@pytest_asyncio.fixture(params=PROVIDERS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    name: str = request.param
    if name == "static":
        yield static_harness()
    elif name == "job":
        yield job_harness()
    elif name == "web":
        async with serve([("GET", "/ok", ok), ("GET", "/down", down)]) as base:
            yield web_harness(base)
    else:
        yield prometheus_harness(request.getfixturevalue("contract_prometheus"))


def exactly_one(result: ProviderResult) -> None:
    chosen = [result.value is not None, result.error is not None, result.pending is not None]
    # A value may legitimately be None only if nothing else is set; error and pending are never both set.
    assert sum(chosen[1:]) <= 1
    assert not (chosen[0] and any(chosen[1:]))
    if result.error is not None:
        assert isinstance(result.error, str)
        assert result.error.strip()
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in result.metadata.items())


async def drive(harness: Harness, m: Metric, timeout: float = 20.0) -> ProviderResult:
    """Start, then poll while pending, checking the shape of every answer."""
    result = await harness.provider.start(m, harness.context)
    exactly_one(result)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while result.pending is not None:
        assert loop.time() < deadline, "a measurement stayed pending too long"
        await asyncio.sleep(0.02)
        result = await harness.provider.poll(m, result.pending, harness.context)
        exactly_one(result)
    return result


@pytest.mark.asyncio
async def test_success_is_a_value(harness: Harness) -> None:
    result = await drive(harness, harness.good)

    assert result.error is None
    assert result.value == pytest.approx(harness.expected)


@pytest.mark.asyncio
async def test_a_failed_query_is_an_error_message(harness: Harness) -> None:
    result = await drive(harness, harness.bad)

    assert result.value is None
    assert result.error


@pytest.mark.asyncio
async def test_broken_metrics_are_errors_never_exceptions(harness: Harness) -> None:
    assert harness.broken
    for broken in harness.broken:
        result = await drive(harness, broken)

        assert result.error, broken.name


@pytest.mark.asyncio
async def test_a_metric_for_another_provider_is_an_error(harness: Harness) -> None:
    other = (
        metric("other", {"web": {"url": "http://127.0.0.1:9/"}})
        if provider_type(harness.good) != "web"
        else metric("other", {"prometheus": {"query": "up"}})
    )

    result = await drive(harness, other)

    assert result.error


@pytest.mark.asyncio
async def test_poll_of_an_unknown_handle_is_an_error(harness: Harness) -> None:
    result = await harness.provider.poll(harness.good, "never-issued", harness.context)

    exactly_one(result)
    assert result.error


@pytest.mark.asyncio
async def test_cancel_is_idempotent(harness: Harness) -> None:
    started = await harness.provider.start(harness.good, harness.context)
    handle = started.pending or "never-issued"

    await harness.provider.cancel(harness.good, handle)
    await harness.provider.cancel(harness.good, handle)
    await harness.provider.cancel(harness.good, "never-issued")

    if started.pending is not None:
        after = await harness.provider.poll(harness.good, handle, harness.context)
        assert after.error


@pytest.mark.asyncio
async def test_concurrent_measurements_do_not_interfere(harness: Harness) -> None:
    results = await asyncio.gather(*(drive(harness, harness.good) for _ in range(4)), drive(harness, harness.bad))

    assert [result.value for result in results[:4]] == [pytest.approx(harness.expected)] * 4
    assert results[4].error


@pytest.mark.asyncio
async def test_the_registry_maps_the_metric_to_this_kind_of_provider(harness: Harness) -> None:
    registered = default_registry().for_metric(harness.good)

    assert type(registered) is type(harness.provider)
    assert registered.type == provider_type(harness.good)


def test_every_provider_has_a_harness() -> None:
    assert sorted(PROVIDERS) == sorted(default_registry().known())
