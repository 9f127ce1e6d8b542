"""The Prometheus provider against a real Prometheus: fixed backfilled data, queried at a fixed time.

Expected numbers follow from `server.openmetrics`: canary success rate 0.95, stable 0.99, an error ratio of
exactly 0.05, latencies 100/110/120/130 repeating every 15 s, and a NaN gauge.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.prometheus import NO_DATA, RESOLVED_QUERY, PrometheusProvider
from headway.spec.analysis import Metric
from tests.e2e.prometheus.server import Backfill

pytestmark = pytest.mark.asyncio


def metric(query: str, **fields: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": {"prometheus": {"query": query, **fields}}})


async def measure(backfill: Backfill, query: str, **fields: Any) -> ProviderResult:
    provider = PrometheusProvider(default_address=backfill.url)
    return await provider.start(metric(query, **fields), MeasureContext(args={}, now=backfill.at))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param('headway_success_rate{revision="canary"}', [0.95], id="vector-one-series"),
        pytest.param("sort(headway_success_rate)", [0.95, 0.99], id="vector-in-prometheus-order"),
        pytest.param("scalar(sum(headway_success_rate))", 1.94, id="scalar-is-a-number"),
        pytest.param(
            'sum(rate(headway_requests_total{code="500"}[1m])) / sum(rate(headway_requests_total[1m]))',
            [0.05],
            id="error-ratio-from-rates",
        ),
    ],
)
async def test_query_results_map_to_condition_values(backfill: Backfill, query: str, expected: object) -> None:
    result = await measure(backfill, query)

    assert result.error is None
    assert result.value == pytest.approx(expected)
    assert result.metadata[RESOLVED_QUERY] == query


async def test_an_empty_vector_is_an_empty_list_with_a_message(backfill: Backfill) -> None:
    result = await measure(backfill, 'headway_success_rate{revision="nobody"}')

    assert result.error is None
    assert result.value == []
    assert result.metadata["message"] == NO_DATA


async def test_nan_is_kept_as_nan(backfill: Backfill) -> None:
    result = await measure(backfill, "headway_broken")

    assert len(result.value) == 1
    assert math.isnan(result.value[0])


async def test_a_bad_query_is_an_error_with_prometheus_message(backfill: Backfill) -> None:
    result = await measure(backfill, "sum(rate(headway_requests_total[1m])")

    assert result.value is None
    assert result.error is not None
    assert "400 (bad_data)" in result.error
    assert "parse error" in result.error


async def test_the_query_runs_at_the_pass_clock_not_the_wall_clock(backfill: Backfill) -> None:
    provider = PrometheusProvider(default_address=backfill.url)
    later = MeasureContext(args={}, now=backfill.at + timedelta(hours=1))

    result = await provider.start(metric("headway_success_rate"), later)

    assert result.value == []  # an hour after the last sample, beyond the 5-minute lookback


async def test_a_range_query_returns_every_point(backfill: Backfill) -> None:
    range_query = {"start": 'now() - duration("1m")', "end": "now()", "step": "30s"}

    result = await measure(backfill, 'headway_latency_ms{revision="canary"}', rangeQuery=range_query)

    assert result.error is None
    assert result.value == [100.0, 120.0, 100.0]
    assert result.metadata["resultType"] == "matrix"


async def test_a_range_query_over_several_series_is_flattened(backfill: Backfill) -> None:
    start = (backfill.at - timedelta(seconds=30)).isoformat()
    range_query = {"start": start, "end": backfill.at.timestamp(), "step": 15}

    result = await measure(backfill, "sort_desc(headway_success_rate)", rangeQuery=range_query)

    assert sorted(result.value) == [0.95, 0.95, 0.95, 0.99, 0.99, 0.99]
    assert result.metadata["series"] == "2"


async def test_an_address_with_a_trailing_slash_works(backfill: Backfill) -> None:
    result = await measure(backfill, "scalar(vector(1))", address=backfill.url + "/")

    assert result.value == 1.0


# --- authentication, through a real reverse proxy in front of the real server ---------------------------

USER, PASSWORD, TOKEN = "grafana", "s3cret", "token-123"


@pytest_asyncio.fixture
async def guarded(backfill: Backfill) -> AsyncIterator[str]:
    """A proxy to the backfilled Prometheus that wants basic auth or a bearer token, plus an OAuth2 token URL."""
    expected = {aiohttp.encode_basic_auth(USER, PASSWORD), f"Bearer {TOKEN}"}

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("grant_type"), form.get("client_id"), form.get("client_secret")) != (
            "client_credentials",
            "headway",
            "hush",
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        assert form.get("scope") == "read write"
        return web.json_response({"access_token": TOKEN, "token_type": "Bearer"})

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in expected:
            return web.Response(status=401, text="unauthorized")
        if request.headers.get("X-Scope-OrgID") != "tenant_a":
            return web.Response(status=403, text="missing tenant header")
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                backfill.url + request.path.removeprefix("/prom"),
                params=request.query,
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "")},
            ) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    app.router.add_route("*", "/prom/{tail:.*}", forward)
    app.router.add_route("*", "/api/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


TENANT = [{"key": "X-Scope-OrgID", "value": "tenant_a"}]


async def test_without_credentials_the_answer_is_an_error_naming_the_status(guarded: str, backfill: Backfill) -> None:
    result = await measure(backfill, "scalar(vector(1))", address=guarded, headers=TENANT)

    assert result.error is not None
    assert "401" in result.error


async def test_basic_auth(guarded: str, backfill: Backfill) -> None:
    authentication = {"basicAuth": {"username": USER, "password": PASSWORD}}

    result = await measure(
        backfill, "scalar(vector(1))", address=guarded, headers=TENANT, authentication=authentication
    )

    assert result.value == 1.0


async def test_bearer_token_in_headers(guarded: str, backfill: Backfill) -> None:
    headers = [*TENANT, {"key": "Authorization", "value": f"Bearer {TOKEN}"}]

    result = await measure(backfill, 'headway_success_rate{revision="stable"}', address=guarded, headers=headers)

    assert result.value == [0.99]


async def test_an_address_with_a_path_prefix_keeps_it(guarded: str, backfill: Backfill) -> None:
    headers = [*TENANT, {"key": "Authorization", "value": f"Bearer {TOKEN}"}]

    result = await measure(backfill, "scalar(vector(3))", address=f"{guarded}/prom/", headers=headers)

    assert result.value == 3.0


async def test_oauth2_client_credentials_fetch_a_bearer_token(guarded: str, backfill: Backfill) -> None:
    oauth2 = {"tokenUrl": f"{guarded}/oauth/token", "clientId": "headway", "clientSecret": "hush"}
    authentication = {"oauth2": {**oauth2, "scopes": ["read", "write"]}}

    result = await measure(
        backfill, "scalar(vector(2))", address=guarded, headers=TENANT, authentication=authentication
    )

    assert result.value == 2.0


async def test_a_refused_oauth2_client_is_an_error(guarded: str, backfill: Backfill) -> None:
    oauth2 = {"tokenUrl": f"{guarded}/oauth/token", "clientId": "headway", "clientSecret": "wrong"}

    result = await measure(backfill, "scalar(vector(2))", address=guarded, authentication={"oauth2": oauth2})

    assert result.error is not None
    assert "oauth2 token endpoint answered 401" in result.error
