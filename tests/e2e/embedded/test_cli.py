"""The `headway` embedded commands against a real daemon: up detaches, controls act, down leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from headway.cli.main import main
from tests.e2e.embedded.harness import alive, manifest, pids_of


def headway(state: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--state-dir", str(state)], catch_exceptions=False)


@pytest.mark.slow
def test_up_controls_get_status_and_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    file = tmp_path / "web.yaml"
    file.write_text(manifest("web", steps=[{"setWeight": 50}, {"pause": {}}]))
    try:
        up = headway(state, "up", "-f", str(file), "--timeout", "30")
        assert up.exit_code == 0, up.output
        assert "Rollout/web applied" in up.output and "Healthy with v1, traffic at http://127.0.0.1:" in up.output
        daemon_pid = json.loads((state / "daemon.json").read_text())["pid"]

        assert headway(state, "set", "image", "web", "app=v2").exit_code == 0
        status = headway(state, "status", "web", "--timeout", "30")
        assert status.exit_code == 0 and "Paused - CanaryPauseStep" in status.output
        view = json.loads(headway(state, "get", "rollout", "web", "-o", "json").output)
        assert (view["canaryWeight"], view["currentImage"], view["stableImage"]) == (50, "v2", "v1")
        text = headway(state, "get", "rollout", "web").output
        assert "Paused" in text and "CanaryPauseStep" in text and "v2 (canary)" in text and "v1 (stable)" in text
        again = headway(state, "up", "-f", str(file))  # the file says v1: up must resume, not roll back
        assert again.exit_code == 0 and "applied" not in again.output and "Paused with v2" in again.output

        undo = headway(state, "undo", "web", "--to-revision", "9")
        assert undo.exit_code == 1 and "no revision 9 (known: 1, 2)" in undo.output
        bad = headway(state, "set", "image", "web", "v2")
        assert bad.exit_code == 2 and "expected CONTAINER=VERSION" in bad.output
        missing = headway(state, "abort", "nope")
        assert missing.exit_code == 1 and "rollout 'nope' not found" in missing.output

        assert headway(state, "promote", "web", "--full").exit_code == 0
        healthy = headway(state, "status", "web", "--timeout", "30")
        assert healthy.exit_code == 0 and "Healthy" in healthy.output.splitlines()[-1]
        listed = headway(state, "list", "rollouts").output.splitlines()
        assert listed[0].split()[:4] == ["NAME", "NAMESPACE", "STRATEGY", "STATUS"]
        assert listed[1].split()[:3] == ["web", "default", "Canary"] and listed[1].split()[-1] == "v2"
        started = [daemon_pid, *pids_of(state)]
    finally:
        down = headway(state, "down")
    assert down.exit_code == 0 and "headway stopped" in down.output
    assert not [pid for pid in started if alive(pid)], "headway down left processes behind"
    again = headway(state, "down")
    assert again.exit_code == 0 and "was not running" in again.output
    stopped = headway(state, "get", "rollout")
    assert stopped.exit_code == 1 and "start it with `headway up -f FILE`" in stopped.output

    try:  # down forgot the rollouts: the same file deploys afresh
        fresh = headway(state, "up", "-f", str(file), "--timeout", "30")
        assert fresh.exit_code == 0 and "Rollout/web applied" in fresh.output and "Healthy with v1" in fresh.output
    finally:
        assert headway(state, "down").exit_code == 0
