"""DNS rebinding: every local HTTP server of Headway answers only requests that name it in ``Host``.

A page on ``http://evil.example:PORT/`` whose name was made to resolve to 127.0.0.1 sends ``Host:
evil.example:PORT``; before the guard, the daemon answered it with the full spec, env values included. Real HTTP
on 127.0.0.1 against the daemon's API (with the dashboard mounted), the dashboard served alone, and a proxy's
admin API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from headway.dashboard.app import create_app
from headway.dashboard.sim_source import SimSource, demo_rollouts
from headway.http_guard import bearer_matches, host_part
from headway.runtimes.embedded.daemon import Daemon
from headway.runtimes.embedded.dashboard_source import RunnerSource
from headway.runtimes.embedded.proxy import Proxy
from tests.unit.runtimes.embedded.world import MANIFEST, World

TOKEN = "s3cret-token-of-the-daemon"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_ENV = "hunter2-in-an-env-value"

Call = Callable[..., Awaitable[tuple[int, Any]]]


async def call(method: str, url: str, *, host: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    """One request; ``host`` replaces the ``Host`` header (what a rebinding page's browser would send)."""
    headers = dict(kwargs.pop("headers", {}))
    if host is not None:
        headers["Host"] = host
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, **kwargs) as reply:
        text = await reply.text()
        try:
            return reply.status, json.loads(text)
        except json.JSONDecodeError:
            return reply.status, text


@pytest_asyncio.fixture
async def daemon_url(world: World) -> AsyncIterator[str]:
    source = RunnerSource(world.runner)
    daemon = Daemon(world.runner, token=TOKEN, dashboard=create_app(source, token=TOKEN))
    url = await daemon.start("127.0.0.1", 0)
    manifest = MANIFEST.replace(
        "image: web:v1", f"image: web:v1\n          env: [{{name: PASSWORD, value: {SECRET_ENV}}}]"
    )
    status, body = await call("POST", url + "/api/v1/apply", data=manifest, headers=AUTH)
    assert status == 201, body
    await world.turns(3)
    yield url
    await daemon.close()


@pytest.mark.asyncio
async def test_the_daemon_serves_nothing_to_a_foreign_host(daemon_url: str) -> None:
    port = daemon_url.rpartition(":")[2]
    for path in ("/api/v1/rollouts/web", "/api/v1/rollouts", "/dashboard/api/rollouts/default/web", "/healthz"):
        status, body = await call("GET", daemon_url + path, host=f"evil.example:{port}")
        assert status == 421, (path, body)
        assert SECRET_ENV not in json.dumps(body)
        assert "DNS rebinding" in body["error"] and "evil.example" in body["error"]

    status, body = await call("GET", daemon_url + "/api/v1/rollouts/web")
    assert status == 200 and SECRET_ENV in json.dumps(body)  # the same read, naming this server, is answered
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "LOCALHOST.:9000"):
        status, _ = await call("GET", daemon_url + "/api/v1/rollouts/web", host=host)
        assert status == 200, host


@pytest.mark.asyncio
async def test_a_foreign_host_cannot_act_even_with_the_token(daemon_url: str, world: World) -> None:
    port = daemon_url.rpartition(":")[2]
    change = {"container": "app", "image": "web:v2"}
    url = daemon_url + "/api/v1/rollouts/web/set-image"
    status, body = await call("POST", url, host=f"evil.example:{port}", headers=AUTH, json=change)
    assert status == 421, body
    assert (world.rollout().spec.template or {})["spec"]["containers"][0]["image"] == "web:v1"


@pytest.mark.asyncio
async def test_a_mutation_from_another_origin_is_refused(daemon_url: str, world: World) -> None:
    origin = {"Origin": "http://evil.example:8000", **AUTH}
    body = {"container": "app", "image": "web:v2"}
    status, answer = await call("POST", daemon_url + "/api/v1/rollouts/web/set-image", headers=origin, json=body)
    assert status == 403 and "cross-origin" in answer["error"]
    status, _ = await call("POST", daemon_url + "/dashboard/api/rollouts/default/web/pause", headers=origin)
    assert status == 403
    assert not world.rollout().spec.paused
    same = {"Origin": daemon_url, **AUTH}
    status, answer = await call("POST", daemon_url + "/api/v1/rollouts/web/set-image", headers=same, json=body)
    assert status == 200, answer


@pytest_asyncio.fixture
async def dashboard() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> str:
        runner = web.AppRunner(create_app(SimSource(demo_rollouts()), **options), shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_the_dashboard_alone_answers_loopback_and_configured_names_only(
    dashboard: Callable[..., Awaitable[str]],
) -> None:
    base = await dashboard(token=TOKEN, allowed_hosts=["devbox.lan"])
    for host in ("rebind.attacker.example:3100", "devbox.lan.attacker.example", "127.0.0.1.nip.io"):
        status, body = await call("GET", base + "api/rollouts", host=host)
        assert status == 421, host
        status, page = await call("GET", base, host=host)
        assert status == 421 and "<html" not in str(page).lower()
    for host in ("devbox.lan:3100", "DEVBOX.LAN", "localhost:3100", "127.0.0.1"):
        status, body = await call("GET", base + "api/rollouts", host=host)
        assert status == 200 and body["rollouts"], host


@pytest.mark.asyncio
async def test_a_proxy_admin_api_takes_no_orders_from_a_foreign_host() -> None:
    proxy = Proxy(token="t" * 40)
    auth = {"Authorization": f"Bearer {'t' * 40}"}  # even with the token: the Host guard comes first
    runner = web.AppRunner(proxy.admin_app(), shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        status, before = await call("GET", url + "/state", headers=auth)
        assert status == 200
        patch = {"backends": {"evil": ["203.0.113.9:80"]}}
        status, body = await call("PATCH", url + "/state", host="evil.example", json=patch, headers=auth)
        assert status == 421, body
        status, after = await call("GET", url + "/state", headers=auth)
        assert after == before
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost:3100", "localhost"),
        ("[::1]:3100", "::1"),
        ("[::1]", "::1"),
        ("Example.COM.", "example.com"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_host_part_of_a_host_header(header: str, host: str) -> None:
    assert host_part(header) == host


@pytest.mark.asyncio
async def test_a_dashboard_token_that_is_not_ascii_is_refused_like_a_wrong_one_not_a_500(
    dashboard: Callable[..., Awaitable[str]],
) -> None:
    base = await dashboard(token=TOKEN)
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/rollouts/default/web/promote HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xc3\xa9\xff\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


@pytest.mark.parametrize(
    ("header", "token", "matches"),
    [
        ("Bearer s3cret", "s3cret", True),
        ("bearer  s3cret ", "s3cret", True),
        ("Bearer s3cre", "s3cret", False),
        ("Basic s3cret", "s3cret", False),
        ("Bearer \udcff\udcfe", "s3cret", False),  # bytes that were not UTF-8, as aiohttp hands them over
        ("Bearer é", "s3cret", False),
        ("Bearer ", "", False),  # an empty token is no token
        ("", "s3cret", False),
    ],
)
def test_a_bearer_header_matches_only_its_token(header: str, token: str, matches: bool) -> None:
    assert bearer_matches(header, token) is matches
