"""TLS options of the HTTP providers against a real HTTPS server with a self-signed certificate.

Verification stays on by default (a self-signed server is an error), ``insecure: true`` skips it, and the
Prometheus provider's ``caCert`` trusts one CA while still verifying. The certificate comes from the openssl
command (required under CI, skipped locally when absent).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.providers.base import MeasureContext
from headway.providers.prometheus import PrometheusProvider
from headway.providers.web import WebProvider
from headway.spec.analysis import Metric

CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Https:
    url: str
    certificate: str


def self_signed(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("the openssl command is needed for the TLS tests")
        pytest.skip("the openssl command is needed for the TLS tests")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        [openssl, *request, "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def scalar(_: web.Request) -> web.Response:
    return web.json_response({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}})


@pytest_asyncio.fixture
async def https(tmp_path: Path) -> AsyncIterator[Https]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", scalar)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Https(url=f"https://127.0.0.1:{port}", certificate=cert.read_text())
    finally:
        await runner.cleanup()


def prometheus(https: Https, **fields: Any) -> Metric:
    return Metric.model_validate(
        {"name": "m", "provider": {"prometheus": {"query": "q", "address": https.url, **fields}}}
    )


def web_metric(https: Https, **fields: Any) -> Metric:
    spec = {"url": f"{https.url}/api/v1/query", "jsonPath": "{$.data.result[1]}", **fields}
    return Metric.model_validate({"name": "m", "provider": {"web": spec}})


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_an_error(https: Https) -> None:
    from_prometheus = await PrometheusProvider().start(prometheus(https), CONTEXT)
    from_web = await WebProvider().start(web_metric(https), CONTEXT)

    assert from_prometheus.error is not None
    assert "certificate" in from_prometheus.error.lower()
    assert from_web.error is not None
    assert "certificate" in from_web.error.lower()


@pytest.mark.asyncio
async def test_insecure_skips_verification(https: Https) -> None:
    from_prometheus = await PrometheusProvider().start(prometheus(https, insecure=True), CONTEXT)
    from_web = await WebProvider().start(web_metric(https, insecure=True), CONTEXT)

    assert from_prometheus.value == 0.5
    assert from_web.value == "0.5"


@pytest.mark.asyncio
async def test_ca_cert_trusts_the_server_and_keeps_verifying(https: Https) -> None:
    result = await PrometheusProvider().start(prometheus(https, caCert=https.certificate), CONTEXT)

    assert result.error is None
    assert result.value == 0.5
