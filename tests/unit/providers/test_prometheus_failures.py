"""Prometheus provider failures a healthy Prometheus cannot produce: every one is an error result, none raises.

Answers come from a small real HTTP server that speaks Prometheus' envelope; the happy paths run against a real
Prometheus in tests/e2e/prometheus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.prometheus import PrometheusProvider, QueryError, _range_query
from headway.spec.analysis import Metric
from tests.unit.providers.servers import serve

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONTEXT = MeasureContext(args={}, now=NOW)
asked: list[tuple[str, dict[str, str]]] = []


async def answer(request: web.Request) -> web.Response:
    """Answers whatever the query names: the envelope to send is chosen by the query text."""
    form = dict(await request.post()) if request.method == "POST" else dict(request.query)
    asked.append((request.method, {key: str(value) for key, value in form.items()}))
    query = str(form.get("query", ""))
    if query == "slow":
        await asyncio.sleep(5)
    if query == "html":
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")
    if query == "overloaded":
        body = {"status": "error", "errorType": "unavailable", "error": "too many queries"}
        return web.json_response(body, status=503)
    if query == "malformed":
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [{"v": 1}]}})
    if query == "weird":
        return web.json_response({"status": "success", "data": {"resultType": "histogram", "result": []}})
    if query == "warned":
        data = {"resultType": "scalar", "result": [1, "+Inf"]}
        return web.json_response({"status": "success", "data": data, "warnings": ["partial response"]})
    return web.json_response({"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}})


async def refuse_post(request: web.Request) -> web.Response:
    if request.method == "POST":
        asked.append(("POST", {}))
        return web.Response(status=405)
    return await answer(request)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[str]:
    asked.clear()
    routes = [
        ("*", "/api/v1/query", answer),
        ("*", "/api/v1/query_range", answer),
        ("*", "/get/api/v1/query", refuse_post),
    ]
    async with serve(routes) as url:
        yield url


async def measure(address: str | None, query: str, **fields: Any) -> ProviderResult:
    spec = {"query": query, **fields}
    if address is not None:
        spec["address"] = address
    m = Metric.model_validate({"name": "m", "provider": {"prometheus": spec}})
    return await PrometheusProvider().start(m, CONTEXT)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("html", "prometheus answered 502 with a body that is not JSON: <html>bad gateway</html>"),
        ("overloaded", "prometheus answered 503 (unavailable): too many queries"),
        ("malformed", "prometheus answered a malformed vector result"),
        ("weird", "prometheus result type 'histogram' is not supported"),
    ],
)
async def test_bad_answers_are_errors_with_the_cause(fake: str, query: str, message: str) -> None:
    result = await measure(fake, query)

    assert result.value is None
    assert result.error == message


@pytest.mark.asyncio
async def test_timeout_bounds_the_query(fake: str) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()

    result = await measure(fake, "slow", timeout=1)

    assert result.error == f"prometheus at {fake} did not answer within 1s (timeout)"
    assert loop.time() - began < 4
    assert asked[0][1]["timeout"] == "1s"  # Prometheus gives up too


@pytest.mark.asyncio
async def test_the_query_is_posted_at_the_pass_time(fake: str) -> None:
    await measure(fake, "up")

    method, form = asked[0]
    assert method == "POST"
    assert float(form["time"]) == NOW.timestamp()
    assert form["timeout"] == "30s"


@pytest.mark.asyncio
async def test_a_server_that_refuses_post_gets_a_get(fake: str) -> None:
    result = await measure(f"{fake}/get", "up")

    assert result.value == 1.0
    assert [method for method, _ in asked] == ["POST", "GET"]


@pytest.mark.asyncio
async def test_warnings_go_to_metadata_and_infinity_is_kept(fake: str) -> None:
    result = await measure(fake, "warned")

    assert result.value == float("inf")
    assert result.metadata["warnings"] == "partial response"


@pytest.mark.asyncio
async def test_range_bounds_are_sent_resolved(fake: str) -> None:
    range_query = {"start": 'now() - duration("10m")', "step": "1m"}

    await measure(fake, "up", rangeQuery=range_query)

    form = asked[0][1]
    assert float(form["start"]) == (NOW - timedelta(minutes=10)).timestamp()
    assert float(form["end"]) == NOW.timestamp()
    assert float(form["step"]) == 60.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("address", "query", "fields", "message"),
    [
        pytest.param(None, "up", {}, "prometheus address is not configured", id="no-address"),
        pytest.param("prometheus:9090", "up", {}, "is not an http(s) URL", id="no-scheme"),
        pytest.param("http://{{args.host}}", "up", {}, "address has an unresolved placeholder", id="address-arg"),
        pytest.param("http://127.0.0.1:9", 'up{job="{{args.job}}"}', {}, "unresolved placeholder", id="query-arg"),
        pytest.param(
            "http://127.0.0.1:9",
            "up",
            {"authentication": {"sigv4": {"region": "eu-west-1"}}},
            "sigv4 is not supported",
            id="sigv4",
        ),
        pytest.param("http://127.0.0.1:9", "up", {"caCert": "not a pem"}, "caCert", id="bad-ca"),
        pytest.param(
            "http://127.0.0.1:9",
            "up",
            {"authentication": {"oauth2": {"clientId": "x"}}},
            "oauth2 needs a tokenUrl",
            id="oauth2-without-url",
        ),
        pytest.param(
            "http://127.0.0.1:9", "up", {"rangeQuery": {"start": "yesterday", "step": "1m"}}, "start", id="range-start"
        ),
        pytest.param(
            "http://127.0.0.1:9",
            "up",
            {"rangeQuery": {"start": "now()", "end": 'now() - duration("1h")', "step": "1m"}},
            "is before start",
            id="range-reversed",
        ),
    ],
)
async def test_configuration_problems_are_errors(
    address: str | None, query: str, fields: dict[str, Any], message: str
) -> None:
    result = await measure(address, query, **fields)

    assert result.value is None
    assert result.error is not None
    assert message in result.error


@pytest.mark.asyncio
async def test_an_unreachable_server_is_an_error() -> None:
    async with serve([]) as gone:
        pass

    result = await measure(gone, "up", timeout=5)

    assert result.error is not None
    assert result.error.startswith(f"cannot reach prometheus at {gone}")


@pytest.mark.asyncio
async def test_poll_is_an_error_and_cancel_a_no_op() -> None:
    provider = PrometheusProvider(default_address="http://127.0.0.1:9")
    m = Metric.model_validate({"name": "m", "provider": {"prometheus": {"query": "up"}}})

    await provider.cancel(m, "anything")
    result = await provider.poll(m, "anything", CONTEXT)

    assert result.error is not None


@pytest.mark.parametrize(
    ("raw", "start", "end", "step"),
    [
        ({"start": "now()", "step": 30}, NOW, NOW, 30.0),
        ({"start": "now() - duration('1h30m')", "end": "now()", "step": "90s"}, NOW - timedelta(minutes=90), NOW, 90.0),
        (
            {"start": "2026-01-01T11:00:00Z", "end": "2026-01-01T11:30:00+00:00", "step": "5m"},
            NOW - timedelta(hours=1),
            NOW - timedelta(minutes=30),
            300.0,
        ),
        (
            {"start": str(NOW.timestamp() - 60), "end": NOW.timestamp(), "step": "1m"},
            NOW - timedelta(minutes=1),
            NOW,
            60.0,
        ),
    ],
)
def test_range_bounds_read_argo_forms(raw: dict[str, Any], start: datetime, end: datetime, step: float) -> None:
    resolved = _range_query(raw, NOW)

    assert resolved is not None
    assert (resolved.start, resolved.end, resolved.step) == (start, end, step)


def test_a_range_query_must_be_an_object() -> None:
    with pytest.raises(QueryError, match="rangeQuery must be an object"):
        _range_query("last 5m", NOW)
