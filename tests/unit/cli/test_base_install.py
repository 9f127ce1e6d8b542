"""`pip install headway` without the ``kubernetes`` extra: every command loads; cluster commands say what to install.

The extra's packages are hidden by modules of the same name that refuse to import (placed first on the path of a
real ``headway`` subprocess), which is what a base install looks like to Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HIDDEN = ("lightkube", "kopf")


def _headway(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    for name in HIDDEN:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError(\"No module named '{name}'\")\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "headway.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("command", [[], ["dashboard"], ["controller"], ["get", "rollout"], ["status"], ["lint"]])
def test_every_help_page_loads_without_the_kubernetes_client(tmp_path: Path, command: list[str]) -> None:
    done = _headway(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status", "web", "--context", "prod"],
        ["promote", "web", "--context", "prod"],
        ["dashboard", "--context", "prod"],
        ["controller"],
    ],
)
def test_a_cluster_command_says_which_extra_to_install(tmp_path: Path, command: list[str]) -> None:
    done = _headway(tmp_path, *command)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "pip install 'headway[kubernetes]'" in done.stderr, done.stderr
