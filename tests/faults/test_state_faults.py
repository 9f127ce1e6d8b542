"""Lost state (issue #10 case 4): the database is truncated or overwritten while the proxy and replicas serve.

Before, ``headway up`` took an empty database as "no rollouts" and re-applying the manifest replaced the running
v4 with v1 at full weight, without a canary. Now the start is refused with what still runs and the two ways out;
a database of garbage is an error naming the file (never a traceback); ``--adopt`` keeps v4 serving as stable so
v1 goes through the steps; ``--reset`` stops what ran and starts afresh.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from headway.cli.main import main
from tests.e2e.embedded.harness import alive, pids_of
from tests.faults import proxy_admin
from tests.faults.conftest import Record
from tests.faults.harness import loaded, manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


def headway(state: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--state-dir", str(state)])


async def cli(state: Path, *args: str) -> Result:
    """The CLI off the loop, so the load keeps going while it waits."""
    return await asyncio.to_thread(headway, state, *args)


def view(state: Path) -> dict[str, Any]:
    answer = headway(state, "get", "rollout", "web", "-o", "json")
    assert answer.exit_code == 0, answer.output
    data: dict[str, Any] = json.loads(answer.output)
    return data


def kill_daemon(state: Path) -> None:
    pid = int(json.loads((state / "daemon.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    while alive(pid):
        pass


def lose_database(state: Path, content: bytes = b"") -> None:
    """The database file overwritten with ``content`` (empty: truncated to 0 bytes), as in the report; its
    write-ahead log stays where the killed daemon left it."""
    (state / "headway.db").write_bytes(content)


async def serving_v4(state: Path, file: Path) -> dict[str, Any]:
    up = await cli(state, "up", "-f", str(file), "--timeout", "30")
    assert up.exit_code == 0, up.output
    assert (await cli(state, "set", "image", "web", "app=v4")).exit_code == 0
    assert (await cli(state, "promote", "web", "--full")).exit_code == 0
    for _ in range(100):
        current = view(state)
        if current["phase"] == "Healthy" and current["stableImage"] == "v4" and current["readyReplicas"] >= 2:
            return current
        await asyncio.sleep(0.1)
    raise AssertionError(f"v4 was not promoted: {current}")


async def test_a_truncated_database_is_refused_then_adopted_with_a_canary(tmp_path: Path, record_fault: Record) -> None:
    state, file = tmp_path / "state", tmp_path / "web.yaml"
    file.write_text(manifest("web", steps=[{"setWeight": 30}, {"pause": {}}]))
    try:
        v4 = await serving_v4(state, file)
        async with loaded(f"http://{proxy_admin.endpoint(state)['listen']}/") as load:
            kill_daemon(state)
            lose_database(state)
            refused = await cli(state, "up")
            daemon = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "headway.bootstrap", "--state-dir", str(state)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            lose_database(state, b"\x00garbage, not a database" * 100)
            garbage = await cli(state, "up", "-f", str(file))
            lose_database(state)
            adopted = await cli(state, "up", "--adopt", "-f", str(file), "--timeout", "30")
            after = view(state)
            await asyncio.sleep(1.0)
        outcome = (
            f"up refused (exit {refused.exit_code}); garbage db: exit {garbage.exit_code} naming the file; "
            f"--adopt kept v4 stable, v1 canaried at {after['canaryWeight']}% ({after['phase']})"
        )
        record_fault(
            "database truncated / garbage",
            sent=load.stats.sent,
            failed=load.machinery,
            outcome=outcome,
            load=load.stats,
        )
        assert refused.exit_code == 1, refused.output
        for needed in (str(state.resolve() / "headway.db"), "it is empty", "default/web", "proxy PID", "--adopt"):
            assert needed in refused.output, (needed, refused.output)
        assert "--reset" in refused.output and "Traceback" not in refused.output
        assert daemon.returncode == 2 and "default/web" in daemon.stderr and "--adopt" in daemon.stderr
        assert "Traceback" not in daemon.stderr
        assert garbage.exit_code == 1 and "headway.db is not a readable headway database" in garbage.output
        assert "Traceback" not in garbage.output
        assert adopted.exit_code == 0, adopted.output
        assert after["stableHash"] == v4["stableHash"], "the running v4 was adopted as stable"
        assert (after["currentImage"], after["canaryWeight"], after["phase"]) == ("v1", 30, "Paused")
        assert load.machinery == 0, load.stats.as_dict()
        assert set(load.stats.versions) <= {"v1", "v4"} and load.stats.versions["v4"] > 0
    finally:
        started = pids_of(state)
        headway(state, "down")
    assert not [pid for pid in started if alive(pid)], "processes left behind"


async def test_a_truncated_database_with_reset_stops_what_ran_and_starts_afresh(
    tmp_path: Path, record_fault: Record
) -> None:
    state, file = tmp_path / "state", tmp_path / "web.yaml"
    file.write_text(manifest("web", steps=[{"setWeight": 30}, {"pause": {}}]))
    try:
        up = await cli(state, "up", "-f", str(file), "--timeout", "30")
        assert up.exit_code == 0, up.output
        old = pids_of(state)
        kill_daemon(state)
        lose_database(state)
        reset = await cli(state, "up", "--reset", "-f", str(file), "--timeout", "30")
        fresh = view(state)
        left = [pid for pid in old if alive(pid)]
        outcome = f"old proxy and replicas stopped ({len(old)} processes), v1 deployed afresh: {fresh['phase']}"
        record_fault("database truncated, up --reset", sent=0, failed=0, outcome=outcome)
        assert reset.exit_code == 0, reset.output
        assert not left, "--reset stopped what the lost database knew of"
        assert fresh["phase"] == "Healthy" and fresh["stableImage"] == "v1"
    finally:
        started = pids_of(state)
        headway(state, "down")
    assert not [pid for pid in started if alive(pid)], "processes left behind"
