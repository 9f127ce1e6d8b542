"""``headway get rollout NAME --watch`` and ``list rollouts -A --watch`` against a cluster, as real processes.

The fidelity emulator stands in for the API server; no controller runs: the test itself moves the rollout (what the
controller would write) and reads the watcher's stdout, a pipe, so each change arrives as one full frame. Ctrl-C
(SIGINT) must end the watch cleanly: exit status 0 and no traceback.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from headway.core.errors import TemporaryError
from headway.dashboard.model import RolloutView
from headway.kube.client import rollouts
from headway.runtimes.kubernetes.operate import follow
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body
from tests.e2e.kubernetes.test_cli_cluster import NS, seed_paused_canary, write_kubeconfig

TIMEOUT = 30.0
"""Generous: a CI machine may be slow to start Python; the redraw itself takes about a second."""


class Watcher:
    """A ``headway … --watch`` process whose stdout is collected line by line in a background thread."""

    def __init__(self, *args: str) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        environment.pop("HEADWAY_MODE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "headway.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, *, since: int = 0, timeout: float = TIMEOUT) -> float:
        """Seconds until ``pattern`` shows up in the output after offset ``since``; fails with the output so far."""
        start = time.monotonic()
        found = re.compile(pattern)
        while not found.search(self.output, since):
            remaining = start + timeout - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self.lines.empty()):
                raise AssertionError(f"no {pattern!r} in the watch output:\n{self.output}\n{self.stderr()}")
            try:
                self.output += self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
        return time.monotonic() - start

    def drain(self) -> str:
        """The output so far, with every line already read."""
        while not self.lines.empty():
            self.output += self.lines.get_nowait()
        return self.output

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> Path:
    return write_kubeconfig(api.url, tmp_path / "kubeconfig")


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.stop()


@pytest.mark.slow
def test_get_rollout_watch_redraws_when_the_step_and_weight_change_and_ctrl_c_exits_cleanly(
    api: ApiServer, kubeconfig: Path, watchers: list[Watcher]
) -> None:
    seed_paused_canary(api)
    watcher = Watcher("get", "rollout", "web", "--watch", "--kubeconfig", str(kubeconfig))
    watchers.append(watcher)
    watcher.wait_for(r"web-bbb222-1  AnalysisRun  ◌ Running")  # the first frame, down to its analysis run
    assert re.search(r"SetWeight:\s+20\b", watcher.output) and "॥ Paused" in watcher.output
    mark = len(watcher.output)

    status = {
        "phase": "Progressing",
        "message": "",
        "currentStepIndex": 2,
        "pauseConditions": None,
        "canary": {"weights": {"canary": {"weight": 50}, "stable": {"weight": 50}}},
    }
    api.kube.patch(rollouts(GROUP), "web", NS, {"status": status}, status=True)
    latency = watcher.wait_for(r"SetWeight:\s+50\b", since=mark)
    watcher.wait_for(r"⟳ web  Rollout  ◌ Progressing", since=mark)
    frame = watcher.output[mark:]
    assert re.search(r"Status:\s+◌ Progressing", frame)
    assert re.search(r"Step:\s+2/2", frame)
    assert latency < 10, f"the watch took {latency:.1f}s to show the change"
    print(f"watch redraw latency: {latency:.2f}s")

    frames_before = watcher.output.count("Name:")
    time.sleep(2.5)  # nothing changes: no new frame (a redraw only on change)
    assert watcher.drain().count("Name:") == frames_before

    watcher.process.send_signal(signal.SIGINT)
    assert watcher.process.wait(15) == 0
    errors = watcher.stderr()
    assert "Traceback" not in errors, errors


@pytest.mark.slow
def test_list_rollouts_all_namespaces_watch_shows_a_new_rollout_and_ends_at_the_timeout(
    api: ApiServer, kubeconfig: Path, watchers: list[Watcher]
) -> None:
    seed_paused_canary(api)
    watcher = Watcher("list", "rollouts", "-A", "--watch", "--watch-timeout", "7", "--kubeconfig", str(kubeconfig))
    watchers.append(watcher)
    watcher.wait_for(r"web\s+default\s+Canary\s+॥ Paused")
    mark = len(watcher.output)
    other = rollout_body("api")
    other["metadata"]["namespace"] = "shop"
    api.kube.create(rollouts(GROUP), other)
    watcher.wait_for(r"api\s+shop\s+Canary", since=mark)
    assert re.search(r"web\s+default\s+Canary\s+॥ Paused", watcher.output[mark:]), "a frame is the whole list"
    assert watcher.process.wait(TIMEOUT) == 0
    assert "Traceback" not in watcher.stderr()


def test_watch_of_a_missing_rollout_says_what_to_do(api: ApiServer, kubeconfig: Path) -> None:
    from click.testing import CliRunner

    from headway.cli.main import main

    result = CliRunner().invoke(main, ["get", "rollout", "nope", "--watch", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1
    assert "no rollout named nope in namespace default (known: none)" in result.output


def _reader(script: list[RolloutView | Exception]) -> Callable[[], Awaitable[RolloutView]]:
    async def read() -> RolloutView:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, Exception):
            raise step
        return step

    return read


async def _take(stream: AsyncIterator[RolloutView], count: int) -> list[RolloutView]:
    return [await anext(stream) for _ in range(count)]


def test_follow_yields_only_changes_and_rides_out_a_blip_but_not_a_first_failure() -> None:
    first, second = RolloutView(name="web", canary_weight=20), RolloutView(name="web", canary_weight=50)
    blip = TemporaryError("get Rollout default/web: ConnectError: refused", delay=5.0)
    script: list[RolloutView | Exception] = [first, first, blip, blip, second]
    seen = asyncio.run(_take(follow(_reader(script), interval=0.01), 2))
    assert [v.canary_weight for v in seen] == [20, 50]  # the repeat printed nothing, the blip was retried

    with pytest.raises(TemporaryError):  # a watch that never read anything fails at once (bad server, bad config)
        asyncio.run(_take(follow(_reader([blip]), interval=0.01), 1))

    async def outlasted() -> None:
        stream = follow(_reader([first, blip]), interval=0.01, patience=0.1)
        await anext(stream)
        await anext(stream)

    with pytest.raises(TemporaryError):  # down for longer than the patience: give up, with the reason
        asyncio.run(asyncio.wait_for(outlasted(), 5))
