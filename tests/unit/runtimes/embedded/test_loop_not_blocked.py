"""A pass stuck in a blocking call (a proxy's admin API that hangs) must not freeze the daemon's event loop.

Passes run on the runner's worker thread; the loop that serves ``/healthz``, the API, the event stream and the
dashboard only awaits them. Commands are serialised with the passes: one sent while a pass is stuck waits for
it, and is carried out after it, never in the middle of it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from headway.core.observation import RouterState
from headway.runtimes.embedded.daemon import Daemon
from headway.spec.rollout import Rollout
from tests.unit.runtimes.embedded.world import MANIFEST, World

TOKEN = "t0ken"
ANSWER_WITHIN = 0.2
STUCK_FOR = 5.0


class Stuck:
    """Makes the world's router block in ``read_weight`` (as urllib does on a hung admin API) until released."""

    def __init__(self, world: World) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = False
        self.inside = False
        self.thread: str | None = None
        original = world.router.read_weight

        def read_weight(rollout: Rollout) -> RouterState:
            if self.armed:
                self.thread = threading.current_thread().name
                self.inside = True
                self.entered.set()
                self.release.wait(STUCK_FOR)
                self.inside = False
            return original(rollout)

        world.router.read_weight = read_weight  # type: ignore[method-assign]


@pytest_asyncio.fixture
async def served(world: World) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    daemon = Daemon(world.runner, token=TOKEN)
    url = await daemon.start("127.0.0.1", 0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield url, session
    await daemon.close()


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    started = time.monotonic()
    async with session.get(url) as response:
        await response.read()
        return time.monotonic() - started, response.status


@pytest.mark.asyncio
async def test_health_list_and_event_stream_answer_while_a_pass_is_stuck(
    world: World, served: tuple[str, aiohttp.ClientSession]
) -> None:
    url, session = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(url + "/api/v1/apply", data=MANIFEST, headers=auth) as response:
        assert response.status == 201
    await world.turns(3)
    stuck = Stuck(world)
    stuck.armed = True
    world.runner.wake()
    turn = asyncio.create_task(world.turns(1))
    assert await asyncio.to_thread(stuck.entered.wait, 5.0), "the pass reached the router"
    try:
        for path in ("/healthz", "/api/v1/rollouts", "/api/v1/rollouts/web"):
            elapsed, status = await timed_get(session, url + path)
            assert status == 200 and elapsed < ANSWER_WITHIN, (path, status, elapsed)
            assert stuck.inside, f"{path} answered only after the stuck pass let go of the loop"
        started = time.monotonic()
        async with session.get(url + "/api/v1/events?after=0") as stream:
            assert stream.status == 200
            frame = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=ANSWER_WITHIN * 5)
            assert time.monotonic() - started < ANSWER_WITHIN, "the event stream answered at once"
            assert b"Applied" in frame
        # A command waits for the stuck pass (one mutation at a time), without blocking the loop meanwhile.
        abort = asyncio.create_task(
            session.post(url + "/api/v1/rollouts/web/abort", json={}, headers=auth).__aenter__()
        )
        await asyncio.sleep(0.3)
        assert not abort.done(), "the command waits for the pass in progress"
        elapsed, status = await timed_get(session, url + "/healthz")
        assert status == 200 and elapsed < ANSWER_WITHIN
        assert not turn.done()
    finally:
        stuck.release.set()
    await asyncio.wait_for(turn, 10)
    response = await asyncio.wait_for(abort, 10)
    assert response.status in (200, 409), await response.text()
    response.release()
    assert stuck.thread is not None and stuck.thread != threading.current_thread().name, "the pass ran off the loop"
