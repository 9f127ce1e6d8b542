"""A real Prometheus for tests: backfilled with fixed samples, or scraping a target, on 127.0.0.1.

Data is loaded with ``promtool tsdb create-blocks-from openmetrics`` before the server starts, stamped about an
hour before the wall clock: old enough to sit in finished blocks, new enough that retention (15 days by
default) keeps them. Tests query at the fixed time `Backfill.at`, so every answer is exact. Prometheus needs a
fraction of a second to be ready; a live scrape needs about 6 s more before the first sample appears (the
scrape manager's initial delay), so tests poll for it with a generous timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ports import free_port

STEP = 15
"""Seconds between backfilled samples."""

SPAN = 600
"""Seconds of backfilled history before `Backfill.at`."""


def binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool; fails under CI (the binaries are required there), skips locally."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    message = "the prometheus and promtool binaries are needed (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PrometheusServer:
    """A running Prometheus process and its base URL."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(workdir: Path, config: str, *, timeout: float = 30.0) -> PrometheusServer:
    """Start Prometheus on a free loopback port with `config`, storage under `workdir`; wait until ready."""
    prometheus, _ = binaries()
    (workdir / "prometheus.yml").write_text(config)
    storage = workdir / "data"
    storage.mkdir(exist_ok=True)
    last_log = ""
    for _ in range(3):  # a port taken between probing and binding is retried on another port
        port = free_port()
        log = workdir / f"prometheus-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = PrometheusServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
        if _wait_ready(server, timeout):
            return server
        server.stop()
        last_log = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"prometheus did not become ready; its log ends with:\n{last_log}")


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Backfill:
    """What the backfilled server holds: `at` is the time to query at (the last sample)."""

    url: str
    at: datetime


def openmetrics(end: int) -> str:
    """Fixed series ending at Unix time `end`, one sample every `STEP` seconds over `SPAN` seconds.

    - ``headway_success_rate{revision}``: canary 0.95, stable 0.99 (constant gauges);
    - ``headway_requests_total{revision="canary",code}``: 19/s of code 200 and 1/s of code 500, so the error
      ratio of any rate() window is exactly 0.05;
    - ``headway_latency_ms{revision="canary"}``: 100, 110, 120, 130 repeating;
    - ``headway_broken``: NaN.
    """
    lines = [
        "# TYPE headway_success_rate gauge",
        "# TYPE headway_requests counter",
        "# TYPE headway_latency_ms gauge",
        "# TYPE headway_broken gauge",
    ]
    success, requests, latency, broken = [], [], [], []
    for index in range(SPAN // STEP + 1):
        stamp = end - SPAN + index * STEP
        success.append(f'headway_success_rate{{revision="canary"}} 0.95 {stamp}')
        success.append(f'headway_success_rate{{revision="stable"}} 0.99 {stamp}')
        requests.append(f'headway_requests_total{{revision="canary",code="200"}} {19 * STEP * index} {stamp}')
        requests.append(f'headway_requests_total{{revision="canary",code="500"}} {STEP * index} {stamp}')
        latency.append(f'headway_latency_ms{{revision="canary"}} {100 + 10 * (index % 4)} {stamp}')
        broken.append(f"headway_broken NaN {stamp}")
    # OpenMetrics wants each metric family in one block, after its TYPE line.
    body = [lines[0], *success, lines[1], *requests, lines[2], *latency, lines[3], *broken, "# EOF", ""]
    return "\n".join(body)


def backfilled(workdir: Path) -> tuple[PrometheusServer, Backfill]:
    """A Prometheus serving `openmetrics` data that ends about an hour ago."""
    _, promtool = binaries()
    end = (int(time.time()) - 3600) // 60 * 60
    source = workdir / "data.om"
    source.write_text(openmetrics(end))
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool failed ({result.returncode}): {result.stderr or result.stdout}")
    server = start(workdir, "global:\n  scrape_interval: 1m\n")
    return server, Backfill(url=server.url, at=datetime.fromtimestamp(end, UTC))


def scraping(workdir: Path, target: str) -> PrometheusServer:
    """A Prometheus that scrapes ``http://<target>/metrics`` every second as job ``app``."""
    config = (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: app\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    return start(workdir, config)
