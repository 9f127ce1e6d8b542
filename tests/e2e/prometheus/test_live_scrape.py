"""The Prometheus provider reads what a real Prometheus scraped from a live app a moment ago.

The app is an aiohttp /metrics endpoint in this test's event loop, exposing prometheus-client counters; the
server scrapes it every second. The first sample takes about 6 s (Prometheus' initial scrape delay), so the
test polls with a 40 s bound instead of sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.prometheus import PrometheusProvider
from headway.spec.analysis import Metric
from tests.e2e.prometheus import server

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_a_live_scrape_becomes_a_measurement(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests served", ["revision", "code"], registry=registry)
    requests.labels("canary", "200").inc(93)
    requests.labels("canary", "500").inc(7)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    prometheus = await asyncio.to_thread(server.scraping, tmp_path, f"{host}:{port}")
    try:
        provider = PrometheusProvider(default_address=prometheus.url)
        query = 'sum(demo_requests_total{code="500"}) / sum(demo_requests_total{job="app"})'
        metric = Metric.model_validate({"name": "errors", "provider": {"prometheus": {"query": query}}})

        result = await _first_value(provider, metric, timeout=40.0)

        assert result.error is None
        assert result.value == pytest.approx([0.07])
    finally:
        await asyncio.to_thread(prometheus.stop)
        await runner.cleanup()


async def _first_value(provider: PrometheusProvider, metric: Metric, timeout: float) -> ProviderResult:
    """Query until the answer is non-empty (the first scrape has landed) or `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await provider.start(metric, MeasureContext(args={}, now=datetime.now(UTC)))
        if result.error is not None or result.value or loop.time() > deadline:
            return result
        await asyncio.sleep(0.25)
