"""Real processes for proxy tests: three backends per session (two of stable, one canary) and a proxy per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.proxy.processes import Running, backend, call, proxy


@pytest.fixture(scope="session")
def backends() -> Iterator[dict[str, Running]]:
    started = {"v1a": backend("v1a"), "v1b": backend("v1b"), "v2": backend("v2")}
    yield started
    for running in started.values():
        running.stop()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "proxy.json"


@pytest.fixture
def running_proxy(state_file: Path, backends: dict[str, Running]) -> Iterator[Running]:
    started = proxy(state_file)
    status, body = call(
        "PUT",
        started.admin + "/state",
        {
            "stable": "old",
            "canary": "new",
            "weights": {"old": 100, "new": 0},
            "backends": {"old": [backends["v1a"].address, backends["v1b"].address], "new": [backends["v2"].address]},
        },
    )
    assert status == 200, body
    yield started
    started.stop()


def require_binary(name: str) -> str:
    """The binary's path; fails in CI if it is missing, skips locally."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path
