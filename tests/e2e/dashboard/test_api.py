"""The dashboard's JSON API and guards over real HTTP: reads, actions, tokens, read-only mode, loopback, SSE."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from headway.dashboard.app import create_app, token_of
from headway.dashboard.sim_source import SimSource, demo_rollouts

TOKEN = "api-token"
START = datetime(2026, 1, 1, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Serve = Callable[..., Awaitable[str]]


@pytest_asyncio.fixture
async def source() -> SimSource:
    demo = SimSource(demo_rollouts(), start=START)
    demo.advance(60)  # payments waits at its indefinite pause, checkout is mid-way
    return demo


@pytest_asyncio.fixture
async def serve(source: SimSource) -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(host: str = "127.0.0.1", **options: Any) -> str:
        runner = web.AppRunner(create_app(source, **options), shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        runners.append(runner)
        return f"http://{host}:{runner.addresses[0][1]}/"

    yield start
    for runner in runners:
        await runner.cleanup()


async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text


@pytest.mark.asyncio
async def test_list_counts_phases_and_get_has_the_details(serve: Serve) -> None:
    base = await serve(token=TOKEN)
    status, body = await call("GET", base + "api/rollouts")
    assert status == 200
    assert {r["name"] for r in body["rollouts"]} == {"checkout", "payments", "search"}
    assert sum(body["counts"].values()) == 3
    assert body["rollouts"][0]["revisions"] == []  # the list is a summary
    status, view = await call("GET", base + "api/rollouts/shop/payments")
    assert status == 200
    assert view["phase"] == "Paused"
    assert view["stepList"] == ["setWeight 20", "pause (until promoted)", "setWeight 50", "pause 30s"]
    assert {r["role"] for r in view["revisions"]} >= {"stable", "canary"}
    assert view["weightHistory"][-1]["set"] == 20


@pytest.mark.asyncio
async def test_unknown_rollout_and_action_are_clear_errors(serve: Serve) -> None:
    base = await serve(token=TOKEN)
    status, body = await call("GET", base + "api/rollouts/shop/nope")
    assert (status, body["error"]) == (
        404,
        "no rollout named nope in namespace shop (known: shop/checkout, shop/payments, web/search)",
    )
    status, body = await call("POST", base + "api/rollouts/shop/payments/explode", headers=AUTH)
    assert status == 400
    assert "unknown action 'explode'" in body["error"]
    status, body = await call("POST", base + "api/rollouts/shop/payments/promote", headers=AUTH, data="[1")
    assert status == 400
    assert "not JSON" in body["error"]


@pytest.mark.asyncio
async def test_promote_needs_the_token(serve: Serve, source: SimSource) -> None:
    base = await serve(token=TOKEN)
    url = base + "api/rollouts/shop/payments/promote"
    status, body = await call("POST", url)
    assert status == 401
    assert "Bearer" in body["error"]
    status, _ = await call("POST", url, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert (await source.get_rollout("payments", "shop")).canary_weight == 20
    status, body = await call("POST", url, headers=AUTH)
    assert (status, body) == (200, {"ok": True, "message": "promote recorded for shop/payments"})
    assert (await source.get_rollout("payments", "shop")).phase == "Progressing"
    source.advance(30)  # the canary scales up for 50%, then traffic moves
    assert (await source.get_rollout("payments", "shop")).canary_weight == 50


@pytest.mark.asyncio
async def test_an_action_that_does_not_apply_is_409_with_the_reason(serve: Serve) -> None:
    base = await serve(token=TOKEN)
    status, body = await call("POST", base + "api/rollouts/shop/payments/retry", headers=AUTH)
    assert (status, body["error"]) == (409, "retry applies to an aborted rollout only")


@pytest.mark.asyncio
async def test_a_generated_token_is_long_and_read_only_refuses_every_action(serve: Serve) -> None:
    generated = create_app(SimSource([], start=START))
    assert len(token_of(generated) or "") >= 24
    base = await serve(read_only=True, token=TOKEN)
    status, body = await call("POST", base + "api/rollouts/shop/payments/promote", headers=AUTH)
    assert status == 403
    assert "read-only" in body["error"]
    status, who = await call("GET", base + "api/whoami")
    assert who == {"readOnly": True, "tokenValid": False}


def non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@pytest.mark.asyncio
async def test_reads_from_a_non_loopback_peer_need_the_token(serve: Serve) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    base = await serve(host=address, token=TOKEN)
    status, body = await call("GET", base + "api/rollouts")
    assert status == 403
    assert "loopback" in body["error"]
    status, _ = await call("GET", base + "api/rollouts", headers=AUTH)
    assert status == 200


@pytest.mark.asyncio
async def test_events_stream_changes_as_server_sent_events(serve: Serve, source: SimSource) -> None:
    base = await serve(token=TOKEN, heartbeat_seconds=0.2)
    frames: list[str] = []
    async with aiohttp.ClientSession() as session, session.get(base + "api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"

        async def read() -> None:
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                frames.append(line)
                if line.startswith("data:") and '"RolloutStepCompleted"' in line:
                    return

        reader = asyncio.create_task(read())
        while not any(f == ": heartbeat" for f in frames):
            await asyncio.sleep(0.05)
        source.advance(60)
        await asyncio.wait_for(reader, 10)
    assert "event: change" in frames
    data = [json.loads(f.removeprefix("data: ")) for f in frames if f.startswith("data:")]
    assert any(d["rollout"] == "shop/checkout" and d["reason"] == "RolloutStepCompleted" for d in data)


@pytest.mark.asyncio
async def test_mounted_under_a_prefix_the_page_links_stay_under_it(source: SimSource) -> None:
    parent = web.Application()
    parent.add_subapp("/dashboard/", create_app(source, token=TOKEN))
    runner = web.AppRunner(parent, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/dashboard/"
    try:
        status, page = await call("GET", base + "rollouts/shop/payments")
        assert status == 200
        assert '<meta name="headway-base" content="/dashboard/">' in page
        assert 'src="/dashboard/static/app.js"' in page
        status, script = await call("GET", base + "static/app.js")
        assert status == 200
        assert "EventSource" in script
        status, body = await call("GET", base + "api/rollouts/shop/payments")
        assert (status, body["name"]) == (200, "payments")
    finally:
        await runner.cleanup()
