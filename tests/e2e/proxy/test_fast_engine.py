"""Framing edge cases of the fast engine over raw sockets: pipelining, HTTP/1.0, malformed requests, 100-continue."""

from __future__ import annotations

import asyncio
import socket

import pytest

from headway.runtimes.embedded.proxy import Proxy
from headway.runtimes.embedded.proxy_state import RoutingState, parse_backends
from tests.e2e.proxy.processes import Running


async def exchange(proxy: Running, raw: bytes, *, until_close: bool = False) -> bytes:
    host, port = proxy.listen.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    try:
        if until_close:
            return await asyncio.wait_for(reader.read(), 5)
        await asyncio.sleep(0.3)
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order(running_proxy: Running) -> None:
    request = f"GET /echo?n=%d HTTP/1.1\r\nHost: {running_proxy.listen}\r\n\r\n"
    raw = "".join(request % n for n in range(3)).encode()

    answer = await exchange(running_proxy, raw)

    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.index(b"n=0") < answer.index(b"n=1") < answer.index(b"n=2")


@pytest.mark.asyncio
async def test_an_http_1_0_client_gets_a_closed_delimited_or_sized_answer(running_proxy: Running) -> None:
    answer = await exchange(running_proxy, b"GET /stream/3 HTTP/1.0\r\n\r\n", until_close=True)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"chunked" not in head.lower()
    assert body == b"x" * 3 * 1024


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
    ],
    ids=["smuggling", "garbage", "http2-preface-like"],
)
async def test_malformed_requests_get_a_400_and_a_closed_connection(running_proxy: Running, raw: bytes) -> None:
    answer = await exchange(running_proxy, raw, until_close=True)

    assert answer.startswith(b"HTTP/1.1 400")


@pytest.mark.asyncio
async def test_expect_100_continue_is_relayed(running_proxy: Running) -> None:
    host, port = running_proxy.listen.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    writer.write(head)
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.write(b"hello")
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()

    assert interim.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 200")


class _Silent(asyncio.Protocol):
    """A backend that accepts connections and reads requests but never answers."""

    def data_received(self, data: bytes) -> None:
        pass


@pytest.mark.asyncio
async def test_a_backend_that_never_answers_gets_a_504_from_the_timeout_sweep() -> None:
    loop = asyncio.get_running_loop()
    silent = await loop.create_server(_Silent, "127.0.0.1", 0)
    backend = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    state = RoutingState(stable="old", weights={"old": 100}, backends={"old": parse_backends([backend], "backends")})
    proxy = Proxy(state, read_timeout=0.3)
    listen, _ = await proxy.start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        host, port = listen.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        counters, _ = proxy.counters.window(loop.time(), None)
    finally:
        await proxy.close(grace=0)
        silent.close()

    assert head.startswith(b"HTTP/1.1 504")
    assert (counters["old"].requests, counters["old"].errors, proxy.slots[backend].inflight) == (1, 1, 0)


class _Answering(asyncio.Protocol):
    """A backend that answers every bodiless request with a fixed 200."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * data.count(b"\r\n\r\n"))  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_both_legs_of_a_relayed_request_have_nagle_off() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answering, "127.0.0.1", 0)
    backend = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    state = RoutingState(stable="old", weights={"old": 100}, backends={"old": parse_backends([backend], "backends")})
    proxy = Proxy(state)
    listen, _ = await proxy.start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        host, port = listen.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.readexactly(len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), 5)
        assert proxy._fast is not None
        legs = [client.transport for client in proxy._fast.connections]
        legs += [upstream.transport for idle in proxy._fast.idle.values() for upstream in idle]
        nodelay = [
            leg.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for leg in legs if leg
        ]
        writer.close()
    finally:
        await proxy.close(grace=0)
        server.close()

    assert answer.endswith(b"ok")
    assert len(nodelay) == 2 and all(nodelay)
