"""Fixtures for the fault tests: a real embedded daemon per test (as in the embedded end-to-end tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.e2e.embedded.harness import DaemonProcess, running_daemon


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    async for process in running_daemon(tmp_path):
        yield process
