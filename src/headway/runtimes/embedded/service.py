"""Embedded mode, running: the runner, the local API and dashboard, git sync, and a clean stop.

`Embedded` holds what the composition root (`headway.bootstrap.embedded.build_embedded`) wired and runs it in
the controlling process: `start` serves the API on 127.0.0.1 and publishes its endpoint and token in the state
directory, `serve` runs until `stop`, and `close` stops the controller, leaving the data plane serving (like a
crash would) unless asked to tear it down (``headway down``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.dashboard.app import create_app
from headway.engine.analysis import AnalysisExecutor
from headway.engine.gates import HttpGates
from headway.engine.notify import Notifier
from headway.platforms.local import LocalPlatform
from headway.private_files import private_dir, write_private_atomically
from headway.runtimes.embedded import gitsync
from headway.runtimes.embedded.daemon import Daemon, new_token
from headway.runtimes.embedded.dashboard_source import RunnerSource
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.embedded.proxy_state import load_state
from headway.runtimes.embedded.runner import Runner
from headway.runtimes.embedded.state_dir import forget
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, GIT_STATE_FILE
from headway.spec.load import Document
from headway.spec.rollout import Rollout, rollout_key
from headway.stores.sqlite import SqliteStore

GIT_DIR = "git"
"""The private copy of the followed repository (fetched commits only)."""
NOTIFY_DRAIN_SECONDS = 3.0
"""How long a stopping daemon waits for queued notifications (a completion sent just before `down`)."""


@dataclass
class Embedded:
    """Everything embedded mode runs in the controlling process, wired; `serve` runs it until stopped."""

    state_dir: Path
    store: SqliteStore
    platform: LocalPlatform
    proxies: Proxies
    runner: Runner
    runs: AnalysisExecutor | None = None
    gates: HttpGates | None = None
    notifier: Notifier | None = None
    token: str = ""
    url: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _teardown: bool = False
    _git_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _git: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.runner.serving is None:
            self.runner.serving = self.routed_stable

    def routed_stable(self, rollout: Rollout) -> str | None:
        """The revision the rollout's proxy routes as stable, from the state file it keeps (None: unknown)."""
        path = self.proxies.dir / f"{rollout_key(rollout).replace('/', '_')}.state.json"
        try:
            state = load_state(path)
        except (OSError, ValueError):
            return None
        if state.stable is not None:
            return state.stable
        return max(state.weights, key=lambda hash: state.weights[hash]) if state.weights else None

    async def start(self, port: int = 0) -> str:
        """Serve the API on 127.0.0.1:``port`` and publish the endpoint and token in the state directory."""
        self.token = new_token(self.state_dir)
        if self.notifier is not None:
            await self.notifier.start()
        source = RunnerSource(self.runner, runs=self.runs.run if self.runs is not None else None)
        self.daemon = Daemon(
            self.runner,
            token=self.token,
            on_shutdown=lambda: self.stop(teardown=True),
            describe=self.describe,
            dashboard=create_app(source, token=self.token),
            read_only_dashboard=create_app(source, read_only=True),
        )
        self.url = await self.daemon.start("127.0.0.1", port)
        write_private_atomically(self.state_dir / ENDPOINT_FILE, json.dumps({"url": self.url, "pid": os.getpid()}))
        self._loop = asyncio.create_task(self.runner.run(), name="headway-runner")
        return self.url

    def sync_git(self, config: gitsync.GitConfig) -> gitsync.GitSync:
        """Apply every new commit of ``config``'s branch from now on (GitOps); stops with `close`."""
        loop = asyncio.get_running_loop()

        def apply(documents: Sequence[Document], source: str) -> list[str]:
            # Called from the sync's thread: the apply itself runs on the runner's worker, after any pass. It is
            # waited for as long as it takes (a timeout here would not stop it, and the commit would be applied
            # with no record of it), unless the daemon stops first.
            future = asyncio.run_coroutine_threadsafe(self.runner.apply_loaded(documents, source), loop)
            while True:
                try:
                    return future.result(timeout=1.0)
                except concurrent.futures.TimeoutError:
                    if self._git_stop.is_set():
                        future.cancel()
                        raise gitsync.GitError("the daemon is stopping: the commit was not applied") from None

        sync = gitsync.GitSync(
            source=gitsync.GitSource(config, private_dir(self.state_dir / GIT_DIR)),
            apply=apply,
            state=self.state_dir / GIT_STATE_FILE,
        )
        self._git = asyncio.create_task(
            gitsync.watch(sync, record=self.runner.record, stopping=self._git_stop), name="headway-git-sync"
        )
        return sync

    def describe(self, rollout: Rollout) -> dict[str, Any]:
        """The embedded fields of a rollout's API view: where its traffic enters."""
        proxy = self.proxies.get(rollout_key(rollout))
        return {"trafficUrl": proxy.url} if proxy is not None else {}

    def stop(self, *, teardown: bool) -> None:
        """Ask `serve` to return; ``teardown`` also stops every replica and proxy (``headway down``)."""
        self._teardown = self._teardown or teardown
        self._stop.set()

    async def serve(self) -> None:
        await self._stop.wait()
        await self.close(teardown=self._teardown)

    async def close(self, *, teardown: bool) -> None:
        self._git_stop.set()
        if self._git is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._git, timeout=gitsync.GIT_TIMEOUT)
        self.runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._loop, timeout=10)
        await asyncio.to_thread(self.runner.close)
        await self.daemon.close()
        (self.state_dir / ENDPOINT_FILE).unlink(missing_ok=True)
        if self.notifier is not None:
            await self.notifier.close(drain_seconds=NOTIFY_DRAIN_SECONDS)
        if self.gates is not None:
            self.gates.close()
        await asyncio.to_thread(self.platform.close, keep=not teardown)
        if teardown:
            await asyncio.to_thread(self.proxies.stop_all)
        self.store.close()
        if teardown:
            forget(self.state_dir)
