"""Fixtures for the embedded end-to-end tests: a daemon process per test, always shut down afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.e2e.embedded.harness import DaemonProcess, alive, pids_of


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    process = DaemonProcess(tmp_path / "state")
    await process.start()
    try:
        yield process
    finally:
        started = pids_of(process.state_dir)
        if process.process is not None and process.process.poll() is None:
            try:
                await process.down()
            except Exception:  # the test failed mid-way; still leave no process behind
                process.process.kill()
        await process.close()
        from headway.bootstrap import teardown

        teardown(process.state_dir)  # a no-op after a clean down; cleans up after a failed test
        assert not [pid for pid in started if alive(pid)], "processes left behind"
