"""Clients that hold connections instead of using them: slow heads, idle keep-alives, floods, and memory.

Each test starts a real proxy process with small limits (``--head-timeout``, ``--idle-timeout``,
``--max-connections``) and drives it over raw sockets; waits are bounded and generous (the machine is shared),
and what is asserted is the proxy's behaviour (answered, closed, served), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.proxy.processes import Running, call, proxy

REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CONNECTIONS = 5_000
RSS_BOUND_MIB = 32
"""Growth of the proxy's resident memory allowed for 5,000 idle keep-alive connections (measured: about 10 MiB,
from about 40 MiB at rest: some 2 KiB per connection)."""


def started(tmp_path: Path, backends: dict[str, Running], *options: str) -> Running:
    running = proxy(tmp_path / "proxy.json", *options)
    state = {"stable": "old", "weights": {"old": 100}, "backends": {"old": [backends["v1a"].address]}}
    status, body = call("PUT", running.admin + "/state", state)
    assert status == 200, body
    return running


@pytest.fixture
def strict(tmp_path: Path, backends: dict[str, Running]) -> Iterator[Running]:
    running = started(tmp_path, backends, "--head-timeout", "1", "--idle-timeout", "1.5", "--max-connections", "400")
    yield running
    running.stop()


async def connect(proxy: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = proxy.listen.split(":")
    return await asyncio.open_connection(host, int(port), limit=1 << 20)


async def answer(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """One whole response (head and Content-Length body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await asyncio.wait_for(reader.readexactly(length), timeout)


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the proxy sends until it closes; an AssertionError if it has not closed within ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {timeout} s") from None
    except ConnectionResetError:
        return b"<reset>"


async def get_ok(proxy: Running) -> None:
    reader, writer = await connect(proxy)
    writer.write(REQUEST)
    assert (await answer(reader)).startswith(b"HTTP/1.1 200 ")
    writer.close()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_slowloris_heads_are_answered_408_and_closed_after_the_head_timeout(strict: Running) -> None:
    async def slow_client() -> tuple[float, bytes]:
        began = time.monotonic()
        reader, writer = await connect(strict)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
        received = asyncio.ensure_future(reader.read())
        try:
            while not received.done() and time.monotonic() - began < 20:  # a header line every 0.2 s, forever
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X-Slow: 1\r\n")
                await asyncio.wait([received], timeout=0.2)
            assert received.done(), "held for 20 s"
            return time.monotonic() - began, received.result()
        finally:
            received.cancel()
            writer.close()

    async def silent_client() -> tuple[float, bytes]:
        began = time.monotonic()
        reader, writer = await connect(strict)
        data = await until_closed(reader, 20)
        writer.close()
        return time.monotonic() - began, data

    results = await asyncio.gather(*[slow_client() for _ in range(200)], silent_client())

    *slow, silent = results
    assert all(data.startswith(b"HTTP/1.1 408 ") for _, data in slow), {data[:40] for _, data in slow}
    assert all(0.9 <= elapsed < 15 for elapsed, _ in slow), sorted(elapsed for elapsed, _ in slow)[::20]
    assert silent[1] == b"" and 0.9 <= silent[0] < 15, silent
    await get_ok(strict)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not(
    strict: Running,
) -> None:
    idle_reader, idle_writer = await connect(strict)
    idle_writer.write(REQUEST)
    await answer(idle_reader)
    went_idle = time.monotonic()

    async def closed_at() -> tuple[float, bytes]:
        data = await until_closed(idle_reader, 20)
        return time.monotonic(), data

    closed = asyncio.ensure_future(closed_at())

    busy_reader, busy_writer = await connect(strict)
    busy_began = time.monotonic()
    while time.monotonic() - busy_began < 3.5:  # more than twice the idle timeout, a request every 0.5 s
        busy_writer.write(REQUEST)
        assert (await answer(busy_reader)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.5)
    busy_writer.close()

    at, data = await closed
    idle_writer.close()
    assert data == b"" and 1.4 <= at - went_idle < 10, (data, at - went_idle)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_past_the_connection_cap_the_longest_idle_connection_makes_room_else_503(
    tmp_path: Path, backends: dict[str, Running]
) -> None:
    running = started(tmp_path, backends, "--max-connections", "20", "--head-timeout", "60")
    try:
        idle = [await connect(running) for _ in range(20)]
        for reader, writer in idle:
            writer.write(REQUEST)
            await answer(reader)

        served_reader, served_writer = await connect(running)  # the 21st: the oldest idle one gives way
        served_writer.write(REQUEST)
        assert (await answer(served_reader)).startswith(b"HTTP/1.1 200 ")
        assert await until_closed(idle[0][0], 10) == b""

        busy = [await connect(running) for _ in range(19)]  # each replaces an idle one: 19 heads owed, 1 idle
        for _, writer in busy:
            writer.write(b"GET / HTTP/1.1\r\n")
        more = [await connect(running) for _ in range(19)]  # the first replaces the last idle one; the rest: 503
        refused_reader, refused_writer = await connect(running)
        refused = await until_closed(refused_reader, 10)

        assert refused.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in refused, refused[:80]
        for _, writer in [*idle, *busy, *more, (served_reader, served_writer), (None, refused_writer)]:
            writer.close()
        deadline = time.monotonic() + 10
        while True:  # the proxy notices the closes asynchronously; then new clients are served again
            try:
                await get_ok(running)
                break
            except (AssertionError, asyncio.IncompleteReadError, ConnectionError):
                assert time.monotonic() < deadline, "still refusing after every client left"
                await asyncio.sleep(0.1)
    finally:
        running.stop()


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for 5,000 sockets here and in the proxy (a child inherits the limit); skip where it cannot be had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * CONNECTIONS + 2_000
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit cannot be raised to {wanted} (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.usefixtures("many_files")
async def test_5000_idle_keep_alive_connections_fit_in_a_bounded_amount_of_memory(
    tmp_path: Path, backends: dict[str, Running]
) -> None:
    running = started(tmp_path, backends)
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(50):
            await get_ok(running)
        before = vm_rss_mib(running.process.pid)

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await connect(running)
            writer.write(REQUEST)
            assert (await answer(reader, 60)).startswith(b"HTTP/1.1 200 ")
            return reader, writer

        for _ in range(CONNECTIONS // 250):
            clients += await asyncio.gather(*[one() for _ in range(250)])
        after = vm_rss_mib(running.process.pid)
        still_open = sum(not reader.at_eof() for reader, _ in clients)
        print(f"proxy RSS {before:.1f} MiB before, {after:.1f} MiB with {len(clients)} idle connections")

        assert still_open == CONNECTIONS
        assert after - before < RSS_BOUND_MIB, (before, after)
    finally:
        for _, writer in clients:
            writer.close()
        running.stop()
