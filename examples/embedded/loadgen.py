"""A steady-rate load generator that tells the machinery's failures apart from the app's own.

Zero downtime is a claim about failures the *machinery* causes: a refused or reset connection, a proxy's own
502/503/504. A bad version's 500s are the app's fault and are what analysis is for. The sample app stamps every
answer with ``X-Version``, so an error with that header came from a revision, and one without came from the path
in between. Counts per version and per failure kind are kept live (`Stats`) for a progress display.

Requests are sent at a fixed rate (open loop, like real users, who do not wait for each other), over a small pool
of keep-alive connections; a request still unanswered after ``timeout`` seconds counts as a timeout.

Run alone: ``python examples/embedded/loadgen.py http://127.0.0.1:8080/ --rate 200 --duration 10`` prints the
stats as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

APP_ERROR = "app-error"
"""A 5xx answered by the app (it carries ``X-Version``): the version's own fault, not the machinery's."""
MACHINERY = ("connection-error", "connection-reset", "proxy-502", "proxy-503", "proxy-504", "timeout", "other")


@dataclass
class Stats:
    """What the load saw so far; ``failures`` by kind, ``versions`` by the version that answered."""

    sent: int = 0
    ok: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    version_errors: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    machinery_times: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each machinery failure, to measure a downtime window."""

    @property
    def completed(self) -> int:
        return self.ok + sum(self.failures.values())

    @property
    def machinery_failures(self) -> int:
        """Failures the proxy, the platform or the rollout caused: everything but the app's own errors."""
        return sum(count for kind, count in self.failures.items() if kind != APP_ERROR)

    def downtime(self) -> float:
        """Seconds from the first machinery failure to the last (0 when there was none or only one)."""
        return max(self.machinery_times) - min(self.machinery_times) if self.machinery_times else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "versions": dict(self.versions),
            "versionErrors": dict(self.version_errors),
            "failures": dict(self.failures),
            "machineryFailures": self.machinery_failures,
            "downtimeSeconds": round(self.downtime(), 3),
            "p50Ms": round(self.percentile(0.5) * 1000, 2),
            "p99Ms": round(self.percentile(0.99) * 1000, 2),
        }


class LoadGenerator:
    """Sends ``rate`` requests per second to ``url`` until `stop` (or ``duration``); `stats` is live."""

    def __init__(self, url: str, *, rate: float = 100.0, connections: int = 16, timeout: float = 5.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.url = url
        self.rate = rate
        self.connections = connections
        self.timeout = timeout
        self.stats = Stats()
        self._stopping = asyncio.Event()
        self._keep_latencies = 200_000

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, duration: float | None = None) -> Stats:
        """Send until stopped or ``duration`` seconds passed, then wait for the requests still in flight."""
        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            index = 0
            while not self._stopping.is_set():
                now = loop.time()
                if duration is not None and now - started >= duration:
                    break
                due = started + index / self.rate
                if due > now:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=due - now)
                    continue
                index += 1
                self.stats.sent += 1
                task = asyncio.create_task(self._one(session))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=self.timeout + 1)
        return self.stats

    async def _one(self, session: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        kind: str | None = None
        version = ""
        try:
            async with session.get(self.url) as response:
                await response.read()
                version = response.headers.get("X-Version", "")
                if response.status < 500:
                    kind = None if version else "other"
                elif version:
                    kind = APP_ERROR
                else:
                    kind = f"proxy-{response.status}" if response.status in (502, 503, 504) else "other"
        except TimeoutError:
            kind = "timeout"
        except aiohttp.ClientConnectorError:
            kind = "connection-error"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            kind = "connection-reset"
        except aiohttp.ClientOSError as error:
            kind = "connection-reset" if error.errno in (errno.ECONNRESET, errno.EPIPE) else "connection-error"
        except aiohttp.ClientError:
            kind = "other"
        if len(self.stats.latencies) < self._keep_latencies:
            self.stats.latencies.append(time.perf_counter() - started)
        if version:
            self.stats.versions[version] += 1
        if kind is None:
            self.stats.ok += 1
            return
        self.stats.failures[kind] += 1
        if kind == APP_ERROR:
            self.stats.version_errors[version] += 1
        elif len(self.stats.machinery_times) < self._keep_latencies:
            self.stats.machinery_times.append(time.monotonic())


async def _main(url: str, rate: float, duration: float) -> None:
    stats = await LoadGenerator(url, rate=rate).run(duration)
    print(json.dumps(stats.as_dict(), indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    args = parser.parse_args()
    asyncio.run(_main(args.url, args.rate, args.duration))
