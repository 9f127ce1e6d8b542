"""The embedded runner's worker: one thread with its own event loop, where every pass, hook and command runs.

The daemon's event loop serves the API, the event stream and the dashboard; a pass does blocking work (urllib
calls to a proxy with a timeout, a proxy start that polls for seconds, SQLite writes). Run on that loop, a stuck
proxy would freeze ``/healthz`` and every watcher. So the runner hands its work to this worker and only awaits it,
as the Kubernetes controller hands passes to a thread pool.

One thread, not a pool: everything that changes a rollout (a pass, ``apply``, ``promote``…) runs here one at a
time, so two of them never interleave inside a synchronous step. The thread runs an event loop of its own rather
than plain calls because the hooks are coroutines (the analysis executor measures metrics concurrently); a hook
awaiting a slow metric lets a command run in between, exactly as it did on the single loop before.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Worker:
    """A thread running an event loop, started on first use; `run` and `call` hand it work and await the result."""

    def __init__(self, name: str = "headway-runner") -> None:
        self.name = name
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine ``job()`` on the worker's loop; the caller's loop stays free while it runs.

        Cancelling the caller cancels the job at its next ``await``; a synchronous part already running finishes.
        """
        loop = self._started()

        async def guarded() -> T:
            return await job()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(guarded(), loop))

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run the plain function ``fn`` on the worker thread (after whatever it is doing now)."""

        async def job() -> T:
            return fn(*args, **kwargs)

        return await self.run(job)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop (pending jobs are cancelled) and join the thread; idempotent. A job stuck in a blocking
        call cannot be interrupted: after ``timeout`` the thread is left to die with the process (a daemon)."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
