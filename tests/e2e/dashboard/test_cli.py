"""`headway dashboard --demo` as a real process, and the small commands around it (completion, version)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from headway.cli.main import main

URL = re.compile(r"^Headway dashboard: (http://127\.0\.0\.1:\d+/)#token=(\S+)$")


@pytest.fixture
def demo() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    command = [sys.executable, "-c", "from headway.cli.main import main; main()", "dashboard", "--demo", "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        first = ""
        while time.monotonic() < deadline and not first:
            first = process.stdout.readline().strip()
        match = URL.match(first)
        assert match, f"unexpected first line: {first!r}"
        yield match.group(1), match.group(2), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_demo_dashboard_serves_rollouts_and_prints_its_token(demo: tuple[str, str, subprocess.Popen[str]]) -> None:
    url, token, process = demo
    assert len(token) >= 24
    with urllib.request.urlopen(url + "api/rollouts", timeout=10) as response:
        body = json.load(response)
    assert {r["name"] for r in body["rollouts"]} == {"checkout", "payments", "search"}
    request = urllib.request.Request(url + "api/whoami", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response) == {"readOnly": False, "tokenValid": True}
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0, "Ctrl-C stops the dashboard cleanly"


def test_dashboard_without_demo_says_what_to_do() -> None:
    result = CliRunner().invoke(main, ["dashboard"])
    assert result.exit_code == 2
    assert "Try `headway dashboard --demo`" in result.output


def test_short_token_is_refused() -> None:
    result = CliRunner().invoke(main, ["dashboard", "--demo", "--token", "short"])
    assert result.exit_code == 2
    assert "at least 16 characters" in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_calls_back_into_headway(shell: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0
    assert "_HEADWAY_COMPLETE" in result.output


def test_completion_completes_subcommands() -> None:
    env = {"_HEADWAY_COMPLETE": "bash_complete", "COMP_WORDS": "headway dash", "COMP_CWORD": "1"}
    result = CliRunner().invoke(main, [], env=env, prog_name="headway")
    assert "plain,dashboard" in result.output.splitlines()


def test_version_json() -> None:
    result = CliRunner().invoke(main, ["version", "-o", "json"])
    assert result.exit_code == 0
    found = json.loads(result.output)
    assert found["headway"] == "0.1.0"
    assert found["python"].startswith("3.")
