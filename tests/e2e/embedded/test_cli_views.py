"""`headway get rollout` / `list rollouts` against a real daemon: the shared views, ``--watch``, and errors that
say what to do next (their texts are snapshots: a change to them is a change users see)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from headway.cli.main import main
from tests.e2e.embedded.harness import DaemonProcess, manifest


def headway(state: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--state-dir", str(state)], catch_exceptions=False)


def test_no_instance_says_how_to_start_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for args in (["get", "rollout", "web"], ["list", "rollouts"], ["promote", "web"]):
        result = headway(state, *args)
        assert (result.exit_code, result.output) == (
            1,
            f"Error: cannot reach a running Headway instance (state dir {state}): start it with `headway up -f FILE`\n",
        )


def test_dead_instance_is_named_by_its_address(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (state / "daemon.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": 999999}))
    result = headway(state, "get", "rollout", "web")
    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot reach the Headway instance at http://127.0.0.1:{port} (state dir {state}): "
        "start it with `headway up -f FILE`\n",
    )


@pytest.mark.slow
@pytest.mark.asyncio
async def test_get_list_watch_and_unknown_names(daemon: DaemonProcess) -> None:
    state = daemon.state_dir
    for name in ("web", "api"):
        await daemon.call("POST", "/api/v1/apply", manifest(name, replicas=1), expect=201)
    for name in ("web", "api"):
        await daemon.wait_rollout(name, lambda v: v["phase"] == "Healthy" and v["currentHash"], f"{name} Healthy")

    link = headway(state, "dashboard")
    assert link.exit_code == 0 and f"Headway dashboard: {daemon.url}/dashboard/#token={daemon.token}\n" in link.output

    missing = headway(state, "get", "rollout", "nope")
    assert (missing.exit_code, missing.output) == (1, "Error: no rollout named nope (known: api, web)\n")
    elsewhere = headway(state, "get", "rollout", "staging/web")
    assert elsewhere.output == "Error: no rollout named web in namespace staging (known: default/api, default/web)\n"

    text = headway(state, "get", "rollout", "web").output
    assert "Healthy" in text and "v1 (stable)" in text and "Processes" in text and "1/1 ready" in text
    as_yaml = yaml.safe_load(headway(state, "get", "rollout", "web", "-o", "yaml").output)
    assert (as_yaml["revisionKind"], as_yaml["stableImage"], as_yaml["revisions"][0]["role"]) == (
        "Processes",
        "v1",
        "stable",
    )
    listed = json.loads(headway(state, "list", "rollouts", "-o", "json").output)
    assert sorted((v["name"], v["phase"]) for v in listed) == [("api", "Healthy"), ("web", "Healthy")]

    # --watch follows the daemon's long poll: a change made meanwhile shows up before the watch ends.
    watching = asyncio.create_task(
        asyncio.to_thread(headway, state, "get", "rollout", "web", "--watch", "--watch-timeout", "5")
    )
    await asyncio.sleep(1.0)
    await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
    watched = await watching
    assert watched.exit_code == 0, watched.output
    assert "v2 (canary)" in watched.output, watched.output
