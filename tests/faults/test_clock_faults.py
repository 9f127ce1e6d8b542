"""The machine's wall clock stepped forward and backward mid-canary (NTP, someone setting the date), under load.

The embedded runner's clock is an input (`headway.runtimes.embedded.runner.SteadyClock`, the daemon's default):
the wall time read once, advanced by a monotonic clock. Here the controller runs in this process, as in `make
demo` (real proxy and app processes, real HTTP), with a wall clock the test steps: a step back must not stall a
2 s pause, a step forward must not end a one-hour pause (that would promote on a duration that never passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from headway.bootstrap.embedded import build_embedded
from headway.runtimes.embedded.daemon import detail
from headway.runtimes.embedded.runner import SteadyClock
from headway.runtimes.embedded.service import Embedded
from tests.e2e.embedded.harness import alive, pids_of
from tests.faults.conftest import Record
from tests.faults.harness import loaded, manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

STEPS: list[dict[str, Any]] = [
    {"setWeight": 30},
    {"pause": {"duration": 2}},
    {"setWeight": 60},
    {"pause": {"duration": 3600}},
]


class Wall:
    """A wall clock the test can step."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest_asyncio.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[Embedded, Wall]]:
    wall = Wall()
    runtime = build_embedded(tmp_path / "state", resync=0.5, clock=SteadyClock(wall=wall))  # as the daemon does
    await runtime.start()
    try:
        yield runtime, wall
    finally:
        started = pids_of(runtime.state_dir)
        await runtime.close(teardown=True)
        assert not [pid for pid in started if alive(pid)], "processes left behind"


async def until(embedded: Embedded, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        view = detail(embedded.runner, embedded.runner.rollout("web"))
        if check(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {view['phase']} {view['canaryWeight']}%")
        await asyncio.sleep(0.05)


async def test_wall_clock_steps_neither_stall_nor_end_a_pause(
    embedded: tuple[Embedded, Wall], record_fault: Record
) -> None:
    runtime, wall = embedded
    await runtime.runner.apply(manifest("web", steps=STEPS))
    await until(runtime, lambda v: v["phase"] == "Healthy" and v["readyReplicas"] >= 2, "v1 to serve")
    proxy = runtime.proxies.get("default/web")
    assert proxy is not None
    async with loaded(proxy.url + "/") as load:
        await runtime.runner.act("web", "set-image", container="app", image="v2")
        await until(runtime, lambda v: v["canaryWeight"] == 30, "the canary at 30%")
        wall.offset -= timedelta(hours=1)
        stepped_back = time.monotonic()
        await until(runtime, lambda v: v["canaryWeight"] == 60, "the 2 s pause to end despite the step back")
        waited = time.monotonic() - stepped_back
        wall.offset += timedelta(hours=3)
        await asyncio.sleep(2.0)  # four resyncs: a pause read from the stepped wall clock would be over
        held = detail(runtime.runner, runtime.runner.rollout("web"))
    outcome = (
        f"wall -1 h: the 2 s pause ended after {waited:.1f} s; wall +2 h: the 1 h pause held at "
        f"{held['canaryWeight']}% ({held['phase']}), stable {held['stableImage']}"
    )
    record_fault(
        "wall clock stepped -1 h then +2 h",
        sent=load.stats.sent,
        failed=load.machinery,
        outcome=outcome,
        load=load.stats,
    )
    assert waited < 10, "a step back of the wall clock did not stall the pause"
    assert (held["phase"], held["canaryWeight"], held["stableImage"]) == ("Paused", 60, "v1"), "no promotion"
    assert load.machinery == 0, load.stats.as_dict()
