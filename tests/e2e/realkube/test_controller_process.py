"""`headway controller` as a process on a real API server, as the ServiceAccount: ``--kubeconfig``, a Lease per API
group, the Lease released on SIGTERM (a restart takes over at once, not after 15 s), the metrics port free again
for a quick restart, and /metrics on loopback unless told otherwise."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headway.kube.client import LEASES, KubeClient
from tests.e2e.realkube.cluster import RealCluster

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return bool(response.read() == b"ok")


def _listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses something listens on at ``port`` (from /proc/net/tcp, state 0A = LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _start(cluster: RealCluster, namespace: str, port: int) -> subprocess.Popen[str]:
    command = [
        str(Path(sys.executable).with_name("headway")),
        "controller",
        "--kubeconfig",
        str(cluster.controller),
        "--namespace",
        namespace,
        "--api-group",
        "argoproj.io",
        "--lease-namespace",
        "headway-system",
        "--metrics-port",
        str(port),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def _holder(admin: KubeClient, name: str) -> str | None:
    lease = await admin.get(LEASES, name, "headway-system")
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None


async def test_sigterm_releases_the_lease_and_frees_the_port_so_a_restart_leads_at_once(
    real_cluster: RealCluster, namespace: str, admin: KubeClient
) -> None:
    import asyncio

    lease = "headway-controller-argoproj-io"  # per API group: a headway.dev controller beside it does not contend
    port = _free_port()
    first = _start(real_cluster, namespace, port)
    try:
        await asyncio.to_thread(_wait, lambda: _healthy(port), 60, "the first controller's /healthz")
        assert _listening_addresses(port) == {"127.0.0.1"}  # loopback by default

        async def held() -> bool:
            return await _holder(admin, lease) is not None

        deadline = asyncio.get_running_loop().time() + 30
        while not await held():
            assert asyncio.get_running_loop().time() < deadline, "the first controller never took its Lease"
            await asyncio.sleep(0.2)
        holder = await _holder(admin, lease)
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(first.communicate, timeout=30)
    assert first.returncode == 0, stderr[-2000:]
    assert await _holder(admin, lease) is None, f"{holder} kept its Lease after SIGTERM"

    started = time.monotonic()
    second = _start(real_cluster, namespace, port)  # the same metrics port, at once
    try:
        await asyncio.to_thread(_wait, lambda: _healthy(port), 30, "the restarted controller's /healthz")
        deadline = asyncio.get_running_loop().time() + 30
        while (current := await _holder(admin, lease)) is None or current == holder:
            assert asyncio.get_running_loop().time() < deadline, "the restarted controller never took the Lease"
            await asyncio.sleep(0.2)
        assert time.monotonic() - started < 10, "the restart waited for the old Lease to expire"
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(second.communicate, timeout=30)
    assert second.returncode == 0, stderr[-2000:]
