"""A real embedded daemon calls a real local gate endpoint and delivers notifications to a real local receiver.

One receiver plays both parts: ``/gate`` answers 503 ("not yet") until the test opens it, ``/notify`` records
every notification. The rollout must hold before promotion while the gate says no, then complete once it says
yes, and the receiver must have heard about the update and the completion (config read from
``<state_dir>/notify.yaml``, the file `headway up` also reads).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from tests.e2e.embedded.harness import DaemonProcess, alive, manifest, pids_of, wait_for


@dataclass
class Receiver:
    url: str = ""
    open: bool = False
    gate_calls: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def reasons(self) -> list[str]:
        return [n["event"]["reason"] for n in self.notifications]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def gate(request: web.Request) -> web.Response:
        state.gate_calls.append(await request.json())
        return web.json_response({}, status=200 if state.open else 503)

    async def notify(request: web.Request) -> web.Response:
        state.notifications.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.add_routes([web.post("/gate", gate), web.post("/notify", notify)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


def gated_manifest(gate_url: str) -> str:
    rollout = json.loads(manifest("web", steps=[{"setWeight": 50}, {"pause": {"duration": "1s"}}]))
    rollout["spec"]["webhooks"] = [
        {"name": "ask-the-team", "type": "confirm-promotion", "url": gate_url, "intervalSeconds": 1}
    ]
    return json.dumps(rollout)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_gate_holds_promotion_until_it_answers_2xx_and_notifications_arrive(
    tmp_path: Path, receiver: Receiver
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = {
        "sinks": [{"name": "hook", "url": f"{receiver.url}/notify", "retries": 1}],
        "subscriptions": [{"sinks": ["hook"]}],
    }
    (state_dir / "notify.yaml").write_text(yaml.safe_dump(config))
    daemon = DaemonProcess(state_dir)
    await daemon.start()
    started: list[int] = []
    try:
        await daemon.call("POST", "/api/v1/apply", gated_manifest(f"{receiver.url}/gate"), expect=201)
        await daemon.wait_rollout("web", lambda v: v["phase"] == "Healthy" and v["currentHash"], "v1 to be Healthy")
        await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)

        async def asked() -> bool:
            return bool(receiver.gate_calls)

        await wait_for(asked, 30, "the confirm-promotion gate to be called")
        call = receiver.gate_calls[0]
        assert (call["name"], call["type"], call["phase"]) == ("web", "confirm-promotion", "Promoting")
        await asyncio.sleep(3)  # several gate intervals with "no": the rollout must still hold at the last step
        held = await daemon.rollout("web")
        assert (held["stableImage"], held["canaryWeight"]) == ("v1", 50), held
        assert len(receiver.gate_calls) >= 2, "a 'no' is asked again after the interval"

        receiver.open = True
        await daemon.wait_rollout(
            "web", lambda v: v["phase"] == "Healthy" and v["stableImage"] == "v2", "promotion after the gate opened"
        )

        async def heard() -> bool:
            return {"RolloutUpdated", "RolloutCompleted"} <= set(receiver.reasons())

        await wait_for(heard, 15, "the update and completion notifications")
        completed = next(n for n in receiver.notifications if n["event"]["reason"] == "RolloutCompleted")
        assert (completed["rollout"], completed["namespace"]) == ("web", "default")
        started = pids_of(state_dir)
        await daemon.down()
    finally:
        await daemon.close()
        from headway.runtimes.embedded.state_dir import teardown

        teardown(state_dir)
    assert not [pid for pid in started if alive(pid)], "processes left behind"


def test_bad_notify_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from headway.cli.main import main

    file, notify = tmp_path / "web.yaml", tmp_path / "notify.yaml"
    file.write_text(manifest("web"))
    notify.write_text(yaml.safe_dump({"sinks": [{"name": "hook", "url": "ftp://nowhere"}]}))
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["up", "-f", str(file), "--notify", str(notify), "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "sinks[0].url" in result.output and "not an http:// or https:// URL" in result.output
    assert not state.exists(), "nothing starts with a bad config"
