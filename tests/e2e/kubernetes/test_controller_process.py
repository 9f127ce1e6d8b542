"""`headway controller` as a real process: serves /healthz and /metrics, reconciles, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from headway.kube.client import REPLICA_SETS, rollouts
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body
from tests.ports import free_port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def _wait(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {check}")


def test_the_controller_process_serves_health_and_metrics_and_stops_on_sigterm(api: ApiServer) -> None:
    api.kube.create(rollouts(GROUP), rollout_body())
    port = free_port()
    headway = Path(sys.executable).with_name("headway")
    command = [str(headway), "controller", "--server", api.url, "--metrics-port", str(port), "--no-leader-election"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{port}/healthz") == "ok")
        _wait(lambda: any(True for _ in api.kube.list(REPLICA_SETS, "default")))  # it reconciled the Rollout
        _wait(lambda: "headway_reconcile_duration_seconds_count" in _get(f"http://127.0.0.1:{port}/metrics"))
        metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert 'headway_rollout_info{name="web",namespace="default",strategy="canary"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr[-2000:]
