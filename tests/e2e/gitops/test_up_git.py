"""`headway up --git`: a real daemon, real app processes behind the real proxy, driven by commits to a repository
served by a real ``git daemon``. A commit that changes the image rolls out through the steps; a commit with an
invalid manifest is refused with the file and the field and changes nothing; ``git revert`` of a release is a fast
rollback to the revision already running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.embedded.harness import DaemonProcess, manifest, pids_of, wait_for
from tests.e2e.gitops.repo import Served, served_repository

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the git command is not installed")
STEPS: list[dict[str, Any]] = [{"setWeight": 30}, {"pause": {"duration": 1}}]


def _headway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headway.cli.main", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_repository(tmp_path) as repository:
        yield repository


@pytest_asyncio.fixture
async def following(served: Served, tmp_path: Path) -> AsyncIterator[tuple[DaemonProcess, Served]]:
    """v1 committed, then ``headway up --git`` on it; torn down with everything it started."""
    served.commit({"deploy/web.yaml": manifest(image="v1", steps=STEPS)}, "web v1")
    state = tmp_path / "state"
    done = _headway(
        "up", "--git", served.url, "--ref", "main", "--path", "deploy", "--git-interval", "0.5",
        "--state-dir", str(state), "--timeout", "60",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rollout web: Healthy with v1" in done.stdout
    daemon = DaemonProcess(state)
    endpoint = json.loads((state / "daemon.json").read_text())
    daemon.url, daemon.token = endpoint["url"], (state / "token").read_text()
    daemon.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    try:
        yield daemon, served
    finally:
        started = pids_of(state)
        await daemon.close()
        down = _headway("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert started  # the story started processes, and `down` stopped them (checked by the harness's users)


def _reasons(view: dict[str, Any]) -> list[str]:
    return [event["reason"] for event in view["events"]]


@pytest.mark.asyncio
async def test_commits_drive_a_release_a_refusal_and_a_revert(
    following: tuple[DaemonProcess, Served], tmp_path: Path
) -> None:
    daemon, served = following
    first = (await daemon.rollout("web"))["gitCommit"]
    assert first and len(first) == 40

    v2 = served.commit({"deploy/web.yaml": manifest(image="v2", steps=STEPS)}, "web v2")
    seen_weights: set[int] = set()

    async def promoted() -> bool:
        view = await daemon.rollout("web")
        seen_weights.add(int(view["canaryWeight"]))
        return bool(view["phase"] == "Healthy" and view["stableImage"] == "v2")

    await wait_for(promoted, 60, "v2 from Git to be promoted")
    assert 30 in seen_weights, f"v2 went through its steps (weights seen: {sorted(seen_weights)})"
    view = await daemon.rollout("web")
    assert view["gitCommit"] == v2
    assert "GitSynced" in _reasons(view)
    stable_v2 = view["stableHash"]

    served.commit({"deploy/web.yaml": manifest(image="v4", steps=[{"setWeight": 30}, {"pause": {}}])}, "web v4")
    await daemon.wait_rollout("web", lambda v: v["currentImage"] == "v4" and v["phase"] == "Paused", "v4 paused")
    reverted = served.revert()
    view = await daemon.wait_rollout(
        "web", lambda v: v["phase"] == "Healthy" and v["currentImage"] == "v2", "the revert to roll back", timeout=30
    )
    assert view["stableHash"] == stable_v2, "the revert went back to the revision already running"
    assert view["canaryWeight"] == 0
    assert view["gitCommit"] == reverted

    broken = json.loads(manifest(image="v3", steps=STEPS))
    broken["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    bad = served.commit({"deploy/web.yaml": json.dumps(broken)}, "web v3, broken")

    async def refused() -> bool:
        return "GitSyncRefused" in _reasons(await daemon.rollout("web"))

    await wait_for(refused, 30, "the broken commit to be refused")
    view = await daemon.rollout("web")
    message = next(e["message"] for e in view["events"] if e["reason"] == "GitSyncRefused")
    assert bad[:12] in message
    assert "deploy/web.yaml: Rollout/web: spec.strategy.canary.steps[0].setWeight" in message
    assert (view["currentImage"], view["stableImage"], view["gitCommit"]) == ("v2", "v2", reverted)
