"""The CLI against a daemon serving real HTTP on 127.0.0.1 (runner on fakes): names and the dashboard command.

Reproduced before the fix: ``headway resume 'sur/abort?'`` sent ``POST /api/v1/rollouts/sur/abort?/resume``,
which the daemon read as "abort sur", and said "resume requested"; ``headway status 'other?x'`` reported rollout
``other``. ``headway dashboard --read-only`` printed the link with the action token, and ignored ``--port``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from headway.cli.embedded import rollout_path
from headway.cli.main import main
from headway.dashboard.app import create_app
from headway.runtimes.embedded.daemon import Daemon
from headway.runtimes.embedded.dashboard_source import RunnerSource
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, TOKEN_FILE
from tests.unit.runtimes.embedded.world import MANIFEST, World

TOKEN = "s3cret-token-of-the-daemon"


@dataclass
class Instance:
    url: str
    state: Path
    world: World

    async def headway(self, *args: str) -> Result:
        """The CLI in a thread (it blocks on HTTP while the daemon answers on this loop)."""
        argv = [*args, "--state-dir", str(self.state)]
        env = {"HEADWAY_MODE": "", "HEADWAY_DASHBOARD_TOKEN": ""}
        return await asyncio.to_thread(CliRunner().invoke, main, argv, env=env, catch_exceptions=False)


def named(name: str) -> str:
    return MANIFEST.replace("metadata:\n  name: web\n", f"metadata:\n  name: {name}\n", 1)


@pytest_asyncio.fixture
async def instance(world: World, tmp_path: Path) -> AsyncIterator[Instance]:
    source = RunnerSource(world.runner)
    daemon = Daemon(
        world.runner,
        token=TOKEN,
        dashboard=create_app(source, token=TOKEN),
        read_only_dashboard=create_app(source, read_only=True),
    )
    url = await daemon.start("127.0.0.1", 0)
    state = tmp_path / "state"
    state.mkdir()
    (state / TOKEN_FILE).write_text(TOKEN)
    (state / ENDPOINT_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    world.runner.apply_text(named("sur") + "---\n" + named("other"))
    await world.turns(3)
    yield Instance(url, state, world)
    await daemon.close()


def aborted(world: World, name: str) -> bool:
    return world.runner.status(world.runner.rollout(name)).abort


@pytest.mark.asyncio
async def test_a_name_with_url_syntax_is_refused_and_acts_on_nothing(instance: Instance) -> None:
    started = await instance.headway("set", "image", "sur", "app=web:v2")
    assert started.exit_code == 0, started.output
    await instance.world.turns(3)
    runner = instance.world.runner
    assert runner.status(runner.rollout("sur")).phase == "Paused"  # mid-update: an abort would stop it

    resume = await instance.headway("resume", "sur/abort?")
    assert resume.exit_code == 2, resume.output
    assert "Invalid value for NAME: 'sur/abort?' is not a valid rollout name (its part 'abort?')" in resume.output
    assert "lowercase RFC 1123 subdomain" in resume.output and "requested" not in resume.output
    await instance.world.turns(1)
    assert not aborted(instance.world, "sur")

    status = await instance.headway("status", "other?x", "--timeout", "1")
    assert status.exit_code == 2 and "'other?x' is not a valid rollout name" in status.output
    assert "Healthy" not in status.output

    for args in (["abort", "Sur"], ["promote", "a/b/c"], ["undo", "web#1"], ["get", "rollout", "x y"]):
        refused = await instance.headway(*args)
        assert refused.exit_code == 2 and "is not a valid rollout name" in refused.output, args
    refused = await instance.headway("set", "image", "sur?x", "app=v3")
    assert refused.exit_code == 2 and "Invalid value for ROLLOUT: 'sur?x'" in refused.output


@pytest.mark.asyncio
async def test_namespace_slash_name_reaches_the_rollout_quoted(instance: Instance) -> None:
    assert rollout_path("default/sur", "abort") == "/api/v1/rollouts/default%2Fsur/abort"
    abort = await instance.headway("abort", "default/sur")
    assert abort.exit_code == 1 and "nothing to abort" in abort.output  # it reached sur: Healthy, no update
    shown = await instance.headway("get", "rollout", "default/other", "-o", "json")
    assert shown.exit_code == 0 and json.loads(shown.output)["name"] == "other"


@pytest.mark.asyncio
async def test_the_api_refuses_a_bad_name_in_its_path(instance: Instance) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(instance.url + "/api/v1/rollouts/sur%2Fabort%3F/resume", headers=auth) as reply:
            assert reply.status == 400
            assert "'abort?' is not a valid name" in (await reply.json())["error"]
        async with session.get(instance.url + "/api/v1/rollouts/Other") as reply:
            assert reply.status == 400
        for path in ("default/Sur/abort", "Default/sur/abort", "default/sur%3Fx/abort"):
            async with session.post(f"{instance.url}/dashboard/api/rollouts/{path}", headers=auth) as reply:
                assert reply.status == 400, path
                assert "is not a valid name" in (await reply.json())["error"]
        async with session.post(instance.url + "/api/v1/apply", data=named("Web_2"), headers=auth) as reply:
            answer = await reply.json()
            assert reply.status == 400, answer
            assert "metadata.name: 'Web_2' is not a valid name" in answer["problems"][0]
    assert not aborted(instance.world, "sur")
    assert sorted(instance.world.runner.rollouts()) == ["default/other", "default/sur"]


@pytest.mark.asyncio
async def test_cluster_commands_check_names_and_namespaces_before_connecting(instance: Instance) -> None:
    # A context that does not exist: a valid name would fail on connecting, not with a usage error.
    for args, flag in (
        (["abort", "ns/web", "--context", "nowhere"], "NAME"),
        (["status", "web?x", "--context", "nowhere"], "NAME"),
        (["get", "rollout", "web", "-n", "Shop_EU"], "--namespace"),
        (["list", "rollouts", "-n", "shop/x"], "--namespace"),
        (["dashboard", "-n", "a.b"], "--namespace"),
    ):
        # without --state-dir: typed along with a cluster flag, it is a usage error of its own
        result = CliRunner().invoke(main, args, env={"HEADWAY_MODE": ""}, catch_exceptions=False)
        assert result.exit_code == 2, (args, result.output)
        assert flag in result.output and "RFC 1123" in result.output, (args, result.output)
    for args, flag in ((["-n", "Bad"], "--namespace"), (["--lease-namespace", "Bad"], "--lease-namespace")):
        result = CliRunner().invoke(main, ["controller", *args, "--server", "http://127.0.0.1:9"])
        assert result.exit_code == 2 and flag in result.output and "RFC 1123" in result.output, result.output


@pytest.mark.asyncio
async def test_the_embedded_dashboard_read_only_link_has_no_token_and_refuses_actions(instance: Instance) -> None:
    result = await instance.headway("dashboard", "--read-only")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "#token" not in result.output
    url = result.output.split("Headway dashboard: ", 1)[1].split()[0]
    assert url == instance.url + "/dashboard-read-only/"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as reply:
            assert reply.status == 200 and "<html" in (await reply.text()).lower()
        async with session.get(url + "api/whoami") as reply:
            assert (await reply.json())["readOnly"] is True
        async with session.post(url + "api/rollouts/default/sur/abort", headers=auth) as reply:
            assert reply.status == 403  # even with the token
    assert not aborted(instance.world, "sur")

    actionable = await instance.headway("dashboard")
    assert actionable.exit_code == 0 and f"{instance.url}/dashboard/#token={TOKEN}" in actionable.output


@pytest.mark.asyncio
async def test_the_embedded_dashboard_refuses_options_it_cannot_honour(instance: Instance) -> None:
    for args, named_flag in (
        (["--port", "9999"], "--port"),
        (["--host", "0.0.0.0"], "--host"),
        (["--token", "x" * 20], "--token"),
        (["--allow-host", "devbox.lan"], "--allow-host"),
    ):
        result = await instance.headway("dashboard", *args)
        assert result.exit_code == 2, (args, result.output)
        assert named_flag in result.output and "serves its dashboard itself" in result.output
        assert TOKEN not in result.output
