"""Proxy speed: throughput and latency direct, through the built-in proxy, and through HAProxy, side by side.

Run on demand: ``.venv/bin/python bench/proxy.py [--seconds 5] [--concurrency 32]``. Prints one JSON document.
Everything is on 127.0.0.1 and bounded (about 40 s with the defaults; never more than 60 s). "proxy" is the
built-in proxy (`headway.runtimes.embedded.proxy`); ``--baseline DIR`` adds "proxy_baseline", the same proxy from
another checkout's ``src`` (for before/after comparisons under the same load).

The backend is a tiny fixed-answer HTTP/1.1 server (an asyncio Protocol, in its own process) so it is not the
bottleneck. The load generator is also a raw asyncio Protocol client over keep-alive connections (an HTTP client
library would cost more CPU than the proxy under test, on the same two cores). Two measurements per path:

- closed loop: ``concurrency`` connections each send the next request as soon as the previous answer arrives, for
  ``seconds`` (in rounds, the paths taking turns as below): requests per second and p50/p99 latency;
- open loop at a fixed rate (500 req/s): requests are scheduled on a clock and latency is measured from the
  scheduled time (no coordinated omission). The paths take turns in short rounds (direct, proxy, ..., then in
  reverse), so each sees the same load from whatever else runs on the machine; "added p50/p99" is the proxy's
  percentile minus the direct one from the same rounds. The client's own timer wakes up to 1 ms late (asyncio
  rounds poll timeouts up to whole milliseconds), which inflates both sides alike; latencies from the moment each
  request was actually written are reported too (``*_from_send``), counted from the schedule when a request had
  to wait for a free connection (the only way the system under test can hold the client back).

The load generator is this process; the backend and each proxy run in processes of their own.

Targets (issue 4): built-in proxy ≥ 5,000 req/s on 2 cores and ≤ 2 ms added p99 at 500 req/s; HAProxy ≥ 40% of
direct throughput. The document reports them as booleans next to the numbers, honestly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from headway.routers.haproxy import Site, haproxy_config  # noqa: E402

BODY = b"ok"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n" + BODY


# --- the tiny backend (run in its own process) ---------------------------------------------------------------


class _Backend(asyncio.Protocol):
    """Answers every request on the connection with the same 200; assumes bodiless GETs (the bench sends those)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)


async def _serve_backend() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Backend, "127.0.0.1", 0, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


# --- the load generator --------------------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection; `send` writes a request, `done` is called with (status, latency) per answer."""

    def __init__(self, request: bytes, done: Callable[[_Client, int, float], None]) -> None:
        self.request = request
        self.done = done
        self.buffer = b""
        self.started = 0.0
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def send(self, started: float) -> None:
        self.started = started
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = (
                int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            )
            if len(self.buffer) < end + 4 + length:
                return
            status = int(self.buffer[9:12])
            self.buffer = self.buffer[end + 4 + length :]
            self.done(self, status, time.perf_counter() - self.started)


async def _connect(address: tuple[str, int], request: bytes, done: Callable[[_Client, int, float], None]) -> _Client:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: _Client(request, done), *address)
    return protocol


def _request(address: tuple[str, int]) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n\r\n".encode()


class ClosedLoop:
    """Answers of one path under closed-loop load, gathered over several rounds (see `closed_loop`)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.latencies: list[float] = []
        self.errors = 0
        self.seconds = 0.0
        self.cpu = 0.0
        """CPU seconds (user + system) the process under test spent during the rounds."""

    def result(self) -> dict[str, Any]:
        cpu = {"cpu_us_per_request": round(1e6 * self.cpu / len(self.latencies), 1)} if self.pid else {}
        return {
            "requests": len(self.latencies),
            "errors": self.errors,
            "rps": round(len(self.latencies) / self.seconds),
            **_percentiles(self.latencies),
            **cpu,
        }


async def closed_loop(address: tuple[str, int], seconds: float, concurrency: int, into: ClosedLoop) -> None:
    """``concurrency`` connections send the next request as soon as an answer arrives; answers until the end count."""
    deadline = 0.0

    def done(client: _Client, status: int, latency: float) -> None:
        now = time.perf_counter()
        if now > deadline:
            return
        into.latencies.append(latency)
        if status >= 500:
            into.errors += 1
        client.send(now)

    request = _request(address)
    clients = [await _connect(address, request, done) for _ in range(concurrency)]
    await _warm(clients)
    cpu = _cpu_seconds(into.pid)
    start = time.perf_counter()
    deadline = start + seconds
    for client in clients:
        client.send(time.perf_counter())
    await asyncio.sleep(seconds)
    into.seconds += time.perf_counter() - start
    into.cpu += _cpu_seconds(into.pid) - cpu
    _close(clients)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (0 if unknown): per-request CPU is steadier than rates on a busy host."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OpenLoop:
    """Latencies of one path at a fixed rate, gathered over several rounds (see `open_loop`)."""

    def __init__(self) -> None:
        self.scheduled: list[float] = []
        self.from_send: list[float] = []
        self.errors = 0

    def result(self, rate: int) -> dict[str, Any]:
        sent = {f"{key}_from_send": value for key, value in _percentiles(self.from_send).items()}
        return (
            {"rate": rate, "requests": len(self.scheduled), "errors": self.errors} | _percentiles(self.scheduled) | sent
        )


async def open_loop(address: tuple[str, int], seconds: float, rate: int, into: OpenLoop) -> None:
    """Requests scheduled every 1/rate s; latency counts from the scheduled time (queueing included)."""
    sent_at: dict[int, float] = {}

    def send(client: _Client, scheduled: float) -> None:
        client.send(scheduled)
        sent_at[id(client)] = time.perf_counter()

    def done(client: _Client, status: int, latency: float) -> None:
        now = time.perf_counter()
        into.scheduled.append(now - client.started)
        into.from_send.append(now - sent_at[id(client)])
        if status >= 500:
            into.errors += 1
        if backlog:
            scheduled = backlog.pop(0)
            send(client, scheduled)
            sent_at[id(client)] = scheduled  # it waited for a free connection: count from its schedule
        else:
            idle.append(client)

    idle: list[_Client] = []
    backlog: list[float] = []

    request = _request(address)
    clients = [
        await _connect(address, request, lambda client, _status, _latency: idle.append(client)) for _ in range(16)
    ]
    for client in clients:
        client.done = done
    await _warm(clients)
    idle[:] = clients
    interval = 1.0 / rate
    start = time.perf_counter()
    scheduled = start
    while scheduled < start + seconds:
        now = time.perf_counter()
        while scheduled <= now:
            if idle:
                send(idle.pop(), scheduled)
            else:
                backlog.append(scheduled)
            scheduled += interval
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
    deadline = time.perf_counter() + 2.0
    while len(idle) < len(clients) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    _close(clients)


async def _warm(clients: list[_Client]) -> None:
    """One request per connection first, so connection setup and the proxy's upstream pool are not measured."""
    waiting = len(clients)
    finished = asyncio.Event()
    originals = {id(client): client.done for client in clients}

    def warmed(client: _Client, status: int, latency: float) -> None:
        nonlocal waiting
        client.done = originals[id(client)]
        waiting -= 1
        if not waiting:
            finished.set()

    for client in clients:
        client.done = warmed
        client.send(time.perf_counter())
    await asyncio.wait_for(finished.wait(), 10)


def _close(clients: list[_Client]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.close()


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


# --- the processes -------------------------------------------------------------------------------------------


def _spawn(args: list[str], src: Path = ROOT / "src") -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(src), "HEADWAY_PROXY_TOKEN": secrets.token_urlsafe(32)}
    process = subprocess.Popen(args, cwd=src.parent, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{args} did not start")
    return process, json.loads(line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run(seconds: float, concurrency: int, rate: int, baseline: Path | None = None) -> dict[str, Any]:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        backend, info = _spawn([sys.executable, __file__, "--serve-backend"])
        processes.append(backend)
        backend_address = f"127.0.0.1:{info['port']}"
        targets: dict[str, tuple[str, int]] = {"direct": ("127.0.0.1", int(backend_address.rsplit(":", 1)[1]))}
        pids: dict[str, int] = {}
        command = [sys.executable, "-m", "headway.runtimes.embedded.proxy", "--listen", "127.0.0.1:0"]
        command += ["--admin", "127.0.0.1:0", "--backend", backend_address]
        sources = {"proxy": ROOT / "src"} | ({"proxy_baseline": baseline / "src"} if baseline else {})
        for name, src in sources.items():
            proxy, info = _spawn(command, src)
            processes.append(proxy)
            pids[name] = proxy.pid
            targets[name] = ("127.0.0.1", int(info["listen"].rsplit(":", 1)[1]))
        haproxy = shutil.which("haproxy")
        if haproxy:
            directory = Path(tempfile.mkdtemp(prefix="headway-bench-"))
            port = _free_port()
            config = haproxy_config(
                [Site("web", f"127.0.0.1:{port}", {"stable": [backend_address]}, stable="stable")],
                runtime_socket=directory / "runtime.sock",
            )
            (directory / "haproxy.cfg").write_text(config)
            processes.append(
                subprocess.Popen([haproxy, "-f", str(directory / "haproxy.cfg"), "-db"], stderr=subprocess.DEVNULL)
            )
            _wait_port(port)
            targets["haproxy"] = ("127.0.0.1", port)
        machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_average_1m": os.getloadavg()[0]}
        results: dict[str, Any] = {"machine": machine}
        rounds = max(1, round(seconds))
        results["settings"] = {"seconds": seconds, "concurrency": concurrency, "fixed_rate": rate, "rounds": rounds}
        closed = {name: ClosedLoop(pids.get(name)) for name in targets}
        for turn in range(rounds):
            for name, address in _in_turn(targets, turn):
                await closed_loop(address, seconds / rounds, concurrency, closed[name])
        for name, loop in closed.items():
            results[name] = {"closed_loop": loop.result()}
        fixed = {name: OpenLoop() for name in targets}
        for turn in range(rounds):
            for name, address in _in_turn(targets, turn):
                await open_loop(address, seconds / rounds, rate, fixed[name])
        for name, gathered in fixed.items():
            results[name]["fixed_rate"] = gathered.result(rate)
        machine["load_average_1m_end"] = os.getloadavg()[0]  # other work on the machine skews the tails: note it
        return results | {"summary": _summary(results)}
    finally:
        for process in reversed(processes):
            _stop(process)


def _in_turn(targets: dict[str, tuple[str, int]], turn: int) -> list[tuple[str, tuple[str, int]]]:
    """The paths in order, reversed every other round: no path always follows the same one (position bias)."""
    items = list(targets.items())
    return items if turn % 2 == 0 else items[::-1]


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    direct, proxy = results["direct"], results["proxy"]

    def added(key: str) -> float:
        return round(float(proxy["fixed_rate"][key] - direct["fixed_rate"][key]), 3)

    summary: dict[str, Any] = {
        "proxy_rps": proxy["closed_loop"]["rps"],
        "proxy_rps_target_5000_met": proxy["closed_loop"]["rps"] >= 5000,
        "proxy_added_p50_ms_at_fixed_rate": added("p50_ms"),
        "proxy_added_p99_ms_at_fixed_rate": added("p99_ms"),
        "proxy_added_p99_target_2ms_met": added("p99_ms") <= 2.0,
        "proxy_added_p50_ms_from_send": added("p50_ms_from_send"),
        "proxy_added_p99_ms_from_send": added("p99_ms_from_send"),
        "proxy_share_of_direct": round(proxy["closed_loop"]["rps"] / direct["closed_loop"]["rps"], 3),
    }
    if "haproxy" in results:
        share = results["haproxy"]["closed_loop"]["rps"] / direct["closed_loop"]["rps"]
        summary |= {"haproxy_share_of_direct": round(share, 3), "haproxy_target_40pct_met": share >= 0.4}
    summary["proxy_cpu_us_per_request"] = proxy["closed_loop"]["cpu_us_per_request"]
    if "proxy_baseline" in results:
        baseline = results["proxy_baseline"]
        summary["baseline_cpu_us_per_request"] = baseline["closed_loop"]["cpu_us_per_request"]
        summary["baseline_rps"] = baseline["closed_loop"]["rps"]
        summary["baseline_share_of_direct"] = round(baseline["closed_loop"]["rps"] / direct["closed_loop"]["rps"], 3)
        summary["baseline_added_p99_ms_at_fixed_rate"] = round(
            float(baseline["fixed_rate"]["p99_ms"] - direct["fixed_rate"]["p99_ms"]), 3
        )
    else:
        summary["haproxy"] = "not installed (apt-get install haproxy)"
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement (8 measurements; max 6)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=500, help="requests per second of the fixed-rate run")
    parser.add_argument("--baseline", type=Path, help="a checkout whose src/ proxy is measured alongside")
    parser.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        asyncio.run(_serve_backend())
        return
    if not 0 < args.seconds <= 6:
        parser.error("--seconds must be within (0, 8] so the whole run stays under 60 s")
    print(json.dumps(asyncio.run(run(args.seconds, args.concurrency, args.rate, args.baseline)), indent=2))


if __name__ == "__main__":
    main()
