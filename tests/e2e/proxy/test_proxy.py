"""The embedded proxy as a real process between real backends: splits, routes, mirrors, headers, bodies, drain."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.proxy.processes import TOKEN, Running, backend, call, proxy, spawn

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def names(url: str, count: int, headers: dict[str, str] | None = None) -> list[str]:
    async with aiohttp.ClientSession() as session:
        result = []
        for _ in range(count):
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                result.append(await response.text())
        return result


def served(running: Running) -> int:
    return int(call("GET", f"http://{running.address}/stats")[1]["served"])


@pytest.mark.asyncio
async def test_weights_split_requests_exactly(running_proxy: Running) -> None:
    call("PATCH", running_proxy.admin + "/state", {"weights": {"old": 80, "new": 20}})

    got = await names(f"http://{running_proxy.listen}/", 100)

    assert Counter(got) == {"v1a": 40, "v1b": 40, "v2": 20}
    assert all(got[i : i + 5].count("v2") == 1 for i in range(0, 100, 5))


@pytest.mark.asyncio
async def test_header_routes_send_matching_requests_to_the_canary(running_proxy: Running) -> None:
    status, _ = call(
        "PUT",
        running_proxy.admin + "/header-routes/qa",
        {"match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]},
    )
    assert status == 200

    assert set(await names(f"http://{running_proxy.listen}/", 5, {"X-Canary": "yes"})) == {"v2"}
    assert set(await names(f"http://{running_proxy.listen}/", 5, {"X-Canary": "no"})) == {"v1a", "v1b"}
    call("DELETE", running_proxy.admin + "/header-routes/qa")
    assert set(await names(f"http://{running_proxy.listen}/", 5, {"X-Canary": "yes"})) == {"v1a", "v1b"}


@pytest.mark.asyncio
async def test_mirrors_copy_requests_to_the_canary_without_answering_from_it(
    running_proxy: Running, backends: dict[str, Running]
) -> None:
    call(
        "PUT",
        running_proxy.admin + "/mirror-routes/shadow",
        {"percentage": 50, "match": [{"path": {"prefix": "/api"}}]},
    )
    before = served(backends["v2"])

    answers = await names(f"http://{running_proxy.listen}/api/items", 20)
    await names(f"http://{running_proxy.listen}/other", 10)

    assert set(answers) == {"v1a", "v1b"}
    deadline = time.monotonic() + 5
    while served(backends["v2"]) - before < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert served(backends["v2"]) - before == 10


@pytest.mark.asyncio
async def test_an_absolute_form_request_is_matched_and_mirrored_by_its_path(
    running_proxy: Running, backends: dict[str, Running]
) -> None:
    call(
        "PUT",
        running_proxy.admin + "/mirror-routes/shadow",
        {"percentage": 100, "match": [{"path": {"prefix": "/api"}}]},
    )
    before = served(backends["v2"])
    host, port = running_proxy.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        for _ in range(3):  # the absolute form a client sends to a proxy (RFC 9112 §3.2.2)
            client.sendall(f"GET http://{running_proxy.listen}/api/items HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith((b"v1a", b"v1b")):
                piece = client.recv(65536)
                assert piece, answer
                answer += piece
            assert answer.startswith(b"HTTP/1.1 200 ")

    deadline = time.monotonic() + 5
    while served(backends["v2"]) - before < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert served(backends["v2"]) - before == 3


@pytest.mark.asyncio
async def test_hop_by_hop_headers_are_stripped_and_forwarded_headers_set(running_proxy: Running) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{running_proxy.listen}/echo",
            headers={
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "1",
                "TE": "trailers",
                "X-Forwarded-For": "10.0.0.1",
            },
        ) as response,
    ):
        echoed = await response.json()
    headers = {key.lower(): value for key, value in echoed["headers"]}

    assert "x-secret" not in headers and "te" not in headers and "connection" not in headers
    assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == running_proxy.listen


@pytest.mark.asyncio
async def test_bodies_stream_both_ways(running_proxy: Running) -> None:
    payload = os.urandom(3 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{running_proxy.listen}/echo", data=chunks()) as response:
            echoed = await response.json()
        async with session.get(f"http://{running_proxy.listen}/stream/300") as response:
            assert response.headers.get("Transfer-Encoding") == "chunked"
            streamed = await response.read()

    assert (echoed["size"], echoed["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert len(streamed) == 300 * 1024


@pytest.mark.asyncio
async def test_keep_alive_serves_several_requests_on_one_connection(running_proxy: Running) -> None:
    host, port = running_proxy.listen.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET / HTTP/1.1\r\nHost: {running_proxy.listen}\r\n\r\n".encode()
    bodies = []
    for _ in range(3):
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        bodies.append(await reader.readexactly(length))
    writer.close()

    assert sorted(bodies) == [b"v1a", b"v1a", b"v1b"] or sorted(bodies) == [b"v1a", b"v1b", b"v1b"]


@pytest.mark.asyncio
async def test_in_flight_requests_are_visible_and_finish_while_draining(
    running_proxy: Running, backends: dict[str, Running]
) -> None:
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(f"http://{running_proxy.listen}/sleep/800"))
        await asyncio.sleep(0.3)
        inflight = call("GET", running_proxy.admin + "/inflight")[1]
        busy = [address for address, count in inflight["inflight"].items() if count]
        assert inflight["total"] == 1 and len(busy) == 1
        drained = {"address": busy[0], "draining": True}
        other = next(b.address for b in (backends["v1a"], backends["v1b"]) if b.address != busy[0])
        call("PATCH", running_proxy.admin + "/state", {"backends": {"old": [drained, other]}})

        got = await names(f"http://{running_proxy.listen}/", 6)
        response = await slow
        assert response.status == 200
        response.release()

    assert len(set(got)) == 1
    assert call("GET", running_proxy.admin + "/inflight")[1]["total"] == 0


@pytest.mark.asyncio
async def test_a_refused_connection_is_retried_on_another_backend() -> None:
    alive = backend("alive")
    dead = backend("dead")
    dead_address = dead.address
    dead.stop()
    started = proxy()
    try:
        call(
            "PUT",
            started.admin + "/state",
            {"stable": "old", "weights": {"old": 100}, "backends": {"old": [dead_address, alive.address]}},
        )
        got = await names(f"http://{started.listen}/", 20)
        payload = os.urandom(200_000)
        async with aiohttp.ClientSession() as session:
            for _ in range(4):  # bodies, streamed: the retry must resend them whole
                async with session.post(f"http://{started.listen}/echo", data=payload) as response:
                    echoed = await response.json()
                    assert (echoed["name"], echoed["size"]) == ("alive", len(payload))
        counters = call("GET", started.admin + "/counters")[1]
    finally:
        started.stop()
        alive.stop()

    assert set(got) == {"alive"}
    assert counters["revisions"]["old"]["errors"] == 0


class _DiesWithTheRequest:
    """A backend that accepts, reads the request head, and closes without answering: a replica killed with the
    request in hand (on a fresh connection, not a stale pooled one)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.seen = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    self.seen += 1

    def stop(self) -> None:
        self.server.close()


@pytest.mark.asyncio
async def test_a_backend_dying_with_a_get_in_hand_is_retried_elsewhere_a_post_is_not() -> None:
    alive = backend("alive")
    dying = _DiesWithTheRequest()
    started = proxy()
    try:
        call(
            "PUT",
            started.admin + "/state",
            {"stable": "old", "weights": {"old": 100}, "backends": {"old": [dying.address, alive.address]}},
        )
        got = await names(f"http://{started.listen}/", 20)
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                async with session.post(f"http://{started.listen}/echo", data=b"x" * 100) as response:
                    statuses.append(response.status)
    finally:
        started.stop()
        alive.stop()
        dying.stop()

    assert dying.seen > 0, "the dying backend was never chosen: the test proves nothing"
    assert set(got) == {"alive"}  # every GET the dying backend dropped was answered by the other one
    assert 502 in statuses  # a POST is not resent: the backend may have acted on it


@pytest.mark.asyncio
async def test_no_ready_backend_is_a_clear_503() -> None:
    started = proxy()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://{started.listen}/") as response:
            assert response.status == 503
            assert "no ready backend" in await response.text()
    finally:
        started.stop()


@pytest.mark.asyncio
async def test_state_survives_a_kill_of_the_proxy(running_proxy: Running, state_file: Path) -> None:
    call("PATCH", running_proxy.admin + "/state", {"weights": {"old": 50, "new": 50}})
    running_proxy.stop(signal.SIGKILL)

    again = proxy(state_file)
    try:
        got = await names(f"http://{again.listen}/", 10)
        state = call("GET", again.admin + "/state")[1]
    finally:
        again.stop()

    assert state["weights"] == {"old": 50, "new": 50}
    assert Counter(got)["v2"] == 5


@pytest.mark.asyncio
async def test_bad_admin_input_is_a_400_naming_the_field(running_proxy: Running) -> None:
    status, body = call("PATCH", running_proxy.admin + "/state", {"weights": {"old": "lots"}})
    assert (status, body["error"]) == (400, "weights.old: expected an integer within 0..10000, got 'lots'")
    status, body = call("PUT", running_proxy.admin + "/mirror-routes/m", {"match": [{"path": {"regex": "("}}]})
    assert status == 400 and "mirrorRoutes.m.match[0].path.regex" in body["error"]
    status, body = call("GET", running_proxy.admin + "/counters?window=-3")
    assert status == 400 and body["error"].startswith("window:")
    async with (
        aiohttp.ClientSession() as session,
        session.patch(running_proxy.admin + "/state", data=b"[" * 100_000, headers=AUTH) as response,
    ):  # nested deeper than the JSON decoder recurses
        assert (response.status, await response.json()) == (400, {"error": "body: expected a JSON document"})


def test_a_corrupt_state_file_stops_the_proxy_with_a_clear_message(tmp_path: Path) -> None:
    state_file = tmp_path / "proxy.json"
    state_file.write_text('{"weights": {"old": 101000}}')

    with pytest.raises(RuntimeError, match=r"weights\.old"):
        proxy(state_file)
    assert json.loads(state_file.read_text()) == {"weights": {"old": 101000}}


def test_the_admin_api_listens_on_loopback_only() -> None:
    with pytest.raises(RuntimeError, match="loopback only"):
        spawn(["headway.runtimes.embedded.proxy", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])


@pytest.mark.asyncio
async def test_counters_are_served_as_json_and_prometheus_text(running_proxy: Running) -> None:
    call("PATCH", running_proxy.admin + "/state", {"weights": {"old": 50, "new": 50}})
    async with aiohttp.ClientSession() as session:
        for path in ["/", "/status/500", "/", "/status/502"]:
            async with session.get(f"http://{running_proxy.listen}{path}") as response:
                await response.read()
        async with session.get(f"{running_proxy.admin}/metrics", headers=AUTH) as response:
            text = await response.text()

    counters = call("GET", running_proxy.admin + "/counters?window=60")[1]
    assert counters["revisions"]["old"]["requests"] + counters["revisions"]["new"]["requests"] == 4
    assert counters["revisions"]["old"]["errors"] + counters["revisions"]["new"]["errors"] == 2
    assert 'headway_proxy_requests_total{revision="new"} 2.0' in text


@pytest.mark.asyncio
async def test_sigterm_lets_in_flight_requests_finish_then_exits_cleanly(running_proxy: Running) -> None:
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(f"http://{running_proxy.listen}/sleep/500"))
        await asyncio.sleep(0.2)
        running_proxy.process.send_signal(signal.SIGTERM)
        response = await slow
        assert (response.status, await response.text()) in {(200, "v1a"), (200, "v1b")}

    assert await asyncio.to_thread(running_proxy.process.wait, 10) == 0


@pytest.mark.asyncio
async def test_head_and_bodiless_statuses_keep_their_framing(running_proxy: Running) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.head(f"http://{running_proxy.listen}/") as response:
            assert (response.status, response.headers["Content-Length"], await response.read()) == (200, "3", b"")
        async with session.get(f"http://{running_proxy.listen}/status/204") as response:
            assert (response.status, await response.read()) == (204, b"")
        async with session.get(f"http://{running_proxy.listen}/") as response:  # the connection is still usable
            assert response.status == 200
