"""A real `headway up`: its state directory is private, its lock survives the lock file, its read-only dashboard.

Reproduced before the fix: deleting ``<state>/lock`` while a daemon ran let a second daemon start on the same
directory and overwrite ``daemon.json``; ``daemon.json``, the database and the logs were 0644 in a 0755 directory.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from headway.cli.main import main
from tests.e2e.embedded.harness import alive, manifest, pids_of


def headway(state: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--state-dir", str(state)], catch_exceptions=False)


def too_open(state: Path) -> list[str]:
    """Every directory not 0700 and file not 0600 (or narrower) under ``state``, with its mode."""
    found = []
    for path in [state, *state.rglob("*")]:
        limit = 0o700 if path.is_dir() else 0o600
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & ~limit:
            found.append(f"{path.relative_to(state)}: {oct(mode)}")
    return found


@pytest.mark.slow
def test_the_state_directory_is_private_and_stays_locked_without_its_lock_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    file = tmp_path / "web.yaml"
    file.write_text(manifest("web", steps=[{"setWeight": 50}, {"pause": {}}]))
    previous_umask = os.umask(0o022)
    try:
        up = headway(state, "up", "-f", str(file), "--timeout", "30")
        assert up.exit_code == 0, up.output
        endpoint = (state / "daemon.json").read_bytes()
        daemon_pid = json.loads(endpoint)["pid"]
        token = (state / "token").read_bytes()
        started = [daemon_pid, *pids_of(state)]
        assert (state / "logs").is_dir() and (state / "daemon.log").exists()  # replicas and the daemon have logged

        assert too_open(state) == []

        (state / "lock").unlink()
        second = subprocess.run(
            [sys.executable, "-m", "headway.bootstrap", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2, second.stderr
        assert "is in use by another headway process" in second.stderr
        assert (state / "daemon.json").read_bytes() == endpoint and (state / "token").read_bytes() == token
        again = headway(state, "up")
        assert again.exit_code == 0 and "Healthy with v1" in again.output
        assert json.loads((state / "daemon.json").read_bytes())["pid"] == daemon_pid

        read_only = headway(state, "dashboard", "--read-only")
        assert read_only.exit_code == 0 and "#token" not in read_only.output
        url = read_only.output.split("Headway dashboard: ", 1)[1].split()[0]
        assert url.endswith("/dashboard-read-only/")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"<html" in page.read().lower()
        action = urllib.request.Request(
            url + "api/rollouts/default/web/abort",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {token.decode()}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(action, timeout=10)
        assert refused.value.code == 403
    finally:
        os.umask(previous_umask)
        down = headway(state, "down")
    assert down.exit_code == 0 and "headway stopped" in down.output
    assert not [pid for pid in started if alive(pid)], "headway down left processes behind"
