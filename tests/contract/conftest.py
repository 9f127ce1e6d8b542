"""The real parts the contract suites' adapters run against, shared by every suite.

The Kubernetes adapters run against the e2e suite's fidelity emulator (its ``api`` fixture, a fresh API server
over real HTTP on 127.0.0.1 per test); the embedded proxy router against real proxy processes, and the HAProxy
router against a real ``haproxy`` (both started once per session and reset by each adapter's builder).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.routers.haproxy import HAProxyRuntime, Site, haproxy_config
from tests.e2e.kubernetes.conftest import api
from tests.e2e.proxy.conftest import require_binary
from tests.e2e.proxy.processes import Running, proxy
from tests.ports import free_port

__all__ = ["APPS", "api", "haproxy_runtime", "proxies"]

APPS = ("web", "api")
"""The rollouts every router adapter is set up for (the contract's two independent rollouts)."""


@pytest.fixture(scope="session")
def proxies() -> Iterator[dict[str, Running]]:
    """One embedded proxy process per app, as the embedded mode runs them."""
    started: dict[str, Running] = {}
    try:
        for app in APPS:
            started[app] = proxy()
        yield started
    finally:
        for running in started.values():
            running.stop()


@pytest.fixture(scope="session")
def haproxy_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxyRuntime]:
    """A real haproxy with one backend per app (skipped, saying so, where the binary is not installed)."""
    binary = require_binary("haproxy")
    directory: Path = tmp_path_factory.mktemp("haproxy")
    socket_path = directory / "runtime.sock"
    sites = [
        Site(
            name=app,
            listen=f"127.0.0.1:{free_port()}",
            servers={"old": ["127.0.0.1:9"], "new": ["127.0.0.1:9"]},
            stable="old",
        )
        for app in APPS
    ]
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(sites, runtime_socket=socket_path))
    process = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert process.poll() is None, "haproxy exited at start"
            assert time.monotonic() < deadline, "haproxy did not open its runtime socket within 10 s"
            time.sleep(0.05)
        yield HAProxyRuntime(socket_path)
    finally:
        process.terminate()
        process.wait(10)
