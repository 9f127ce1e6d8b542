"""The dashboard for a cluster (`ClusterSource`) over real HTTP, against the fidelity emulator.

No controller runs: the test writes what the controller would (status, AnalysisRun measurements, Events) and
checks what the dashboard's JSON API and its server-sent events make of it, and that its actions are the CLI's
patches, refused without the token. ``headway dashboard --kubeconfig`` is run once as a real process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from click.testing import CliRunner

from headway.cli.main import main
from headway.dashboard.app import create_app
from headway.kube.client import EVENTS, KubeClient, rollouts
from headway.runtimes.kubernetes.dashboard_source import ClusterSource
from tests.e2e.dashboard.test_api import call
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body
from tests.e2e.kubernetes.test_cli_cluster import HASHES, NS, seed_paused_canary, write_kubeconfig

TOKEN = "cluster-dashboard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = re.compile(r"^Headway dashboard: (http://127\.0\.0\.1:\d+/)#token=(\S+)$")

Serve = Callable[[ClusterSource], Awaitable[str]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []
    sources: list[ClusterSource] = []

    async def start(source: ClusterSource) -> str:
        runner = web.AppRunner(create_app(source, token=TOKEN, heartbeat_seconds=0.5), shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        sources.append(source)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    yield start
    for runner in runners:
        await runner.cleanup()
    for source in sources:
        await source.close()
        await source.client.close()


@dataclass
class Dashboard:
    url: str
    source: ClusterSource


@pytest_asyncio.fixture
async def dashboard(api: ApiServer, serve: Serve) -> Dashboard:
    """Rollout web paused mid-canary (with its run) in default, rollout api in shop, and the dashboard over both."""
    seed_paused_canary(api)
    other = rollout_body("api", image="example/api:7")
    other["metadata"]["namespace"] = "shop"
    api.kube.create(rollouts(GROUP), other)
    source = ClusterSource(KubeClient.for_server(api.url), poll_seconds=0.2)
    return Dashboard(await serve(source), source)


def post_event(api: ApiServer, reason: str, message: str) -> None:
    """A core/v1 Event on rollout web, shaped like the controller's."""
    api.kube.create(
        EVENTS,
        {
            "metadata": {"generateName": "web.", "namespace": NS},
            "involvedObject": {"kind": "Rollout", "name": "web", "namespace": NS},
            "type": "Normal",
            "reason": reason,
            "message": message,
            "lastTimestamp": "2026-01-01T00:05:00Z",
            "count": 1,
        },
    )


def stored(api: ApiServer) -> dict[str, Any]:
    body = api.kube.get(rollouts(GROUP), "web", NS)
    assert body is not None
    return body


@pytest.mark.asyncio
async def test_list_spans_namespaces_and_detail_has_revisions_runs_measurements_and_events(
    api: ApiServer, dashboard: Dashboard
) -> None:
    post_event(api, "RolloutPaused", "paused at step 2")
    status, body = await call("GET", dashboard.url + "api/rollouts")
    assert status == 200
    assert sorted((r["namespace"], r["name"], r["phase"]) for r in body["rollouts"]) == [
        ("default", "web", "Paused"),
        ("shop", "api", None),
    ]
    assert body["counts"]["Paused"] == 1

    status, view = await call("GET", dashboard.url + "api/rollouts/default/web")
    assert status == 200, view
    assert (view["canaryWeight"], view["step"], view["stepList"]) == (20, 1, ["setWeight 20", "pause (until promoted)"])
    assert [(r["number"], r["role"], r["image"]) for r in view["revisions"]] == [
        (2, "canary", "example/web:2"),
        (1, "stable", "example/web:1"),
    ]
    (run,) = view["analysisRuns"]
    assert (run["name"], run["phase"], run["revision"]) == (f"web-{HASHES[2]}-1", "Running", HASHES[2])
    assert [m["value"] for m in run["measurements"] if m["metric"] == "success-rate"] == [0.991, 0.985, 0.62]
    assert run["judge"]["ratio"] == 1.2 and run["judge"]["toleratedRatio"] == 1.5
    assert [(e["reason"], e["message"]) for e in view["events"]] == [("RolloutPaused", "paused at step 2")]
    assert [p["set"] for p in view["weightHistory"]] == [20]


@pytest.mark.asyncio
async def test_missing_rollout_is_404_naming_what_exists(dashboard: Dashboard) -> None:
    status, body = await call("GET", dashboard.url + "api/rollouts/default/nope")
    assert (status, body["error"]) == (404, "no rollout named nope in namespace default (known: web)")


@pytest.mark.asyncio
async def test_promote_is_refused_without_the_token_and_patched_with_it(api: ApiServer, dashboard: Dashboard) -> None:
    url = dashboard.url + "api/rollouts/default/web/"
    before = stored(api)["metadata"]["resourceVersion"]
    status, body = await call("POST", url + "promote")
    assert status == 401 and "Bearer" in body["error"]
    status, _ = await call("POST", url + "promote", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert stored(api)["metadata"]["resourceVersion"] == before, "a refused promote must write nothing"

    status, body = await call("POST", url + "promote", headers=AUTH, json={})
    assert (status, body) == (200, {"ok": True, "message": "promote requested for default/web"})
    assert stored(api)["status"].get("pauseConditions", []) == []

    assert (await call("POST", url + "promote-full", headers=AUTH))[0] == 200
    assert stored(api)["status"]["promoteFull"] is True
    assert (await call("POST", url + "abort", headers=AUTH))[0] == 200
    assert stored(api)["status"]["abort"] is True
    status, body = await call("POST", url + "promote", headers=AUTH)
    assert status == 409 and "aborted: use retry" in body["error"]
    assert (await call("POST", url + "retry", headers=AUTH))[0] == 200
    assert stored(api)["status"]["abort"] is False

    status, body = await call("POST", url + "undo", headers=AUTH, json={"toRevision": 9})
    assert status == 409 and "no revision 9 (revisions: 2, 1)" in body["error"]
    assert (await call("POST", url + "undo", headers=AUTH, json={}))[0] == 200
    assert stored(api)["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:1"


@pytest.mark.asyncio
async def test_events_stream_a_change_when_the_controller_writes_and_when_it_posts_an_event(
    api: ApiServer, dashboard: Dashboard
) -> None:
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.get(dashboard.url + "api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"

        async def read(until: Callable[[dict[str, Any]], bool]) -> None:
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if until(seen[-1]):
                        return

        while dashboard.source.rounds < 1:  # the poller's first round is the baseline changes are measured against
            await asyncio.sleep(0.05)
        started = time.monotonic()
        weights = {"canary": {"weights": {"canary": {"weight": 50}, "stable": {"weight": 50}}}}
        api.kube.patch(rollouts(GROUP), "web", NS, {"status": weights}, status=True)
        await asyncio.wait_for(read(lambda change: change["rollout"] == "default/web"), 10)
        latency = time.monotonic() - started
        post_event(api, "RolloutStepCompleted", "step 2/2 done")
        await asyncio.wait_for(read(lambda change: change["reason"] == "RolloutStepCompleted"), 10)
    assert seen[-1] == {
        "rollout": "default/web",
        "reason": "RolloutStepCompleted",
        "message": "step 2/2 done",
        "type": "Normal",
        "at": "2026-01-01T00:05:00Z",
    }
    assert latency < 5, f"the change took {latency:.1f}s to reach the page"
    print(f"cluster change to SSE frame: {latency:.2f}s")
    status, view = await call("GET", dashboard.url + "api/rollouts/default/web")
    assert status == 200
    assert [p["set"] for p in view["weightHistory"]] == [20, 50]  # what the source saw, in order


@pytest.mark.asyncio
async def test_an_unreachable_cluster_is_503_saying_what_to_check(serve: Serve) -> None:
    base = await serve(ClusterSource(KubeClient.for_server("http://127.0.0.1:9")))
    status, body = await call("GET", base + "api/rollouts")
    assert status == 503
    assert body["error"] == "cannot reach the cluster at http://127.0.0.1:9: check --context and --kubeconfig"


@pytest.mark.slow
@pytest.mark.parametrize("as_plugin", [False, True], ids=["headway --kubeconfig", "kubectl-headway with KUBECONFIG"])
def test_headway_dashboard_with_a_kubeconfig_serves_the_cluster(
    api: ApiServer, tmp_path: Path, as_plugin: bool
) -> None:
    seed_paused_canary(api)
    kubeconfig = write_kubeconfig(api.url, tmp_path / "kubeconfig")
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "HEADWAY_STATE_DIR": str(tmp_path / "none")}
    environment.pop("HEADWAY_MODE", None)
    if as_plugin:  # `kubectl headway dashboard`: cluster mode with no flag, the kubeconfig from the environment
        plugin = Path(sys.executable).parent / "kubectl-headway"
        assert plugin.exists(), f"{plugin} is not installed: pip install -e . installs it"
        command = [str(plugin), "dashboard", "--port", "0"]
        environment["KUBECONFIG"] = str(kubeconfig)
    else:
        command = [
            sys.executable,
            "-m",
            "headway.cli.main",
            "dashboard",
            "--kubeconfig",
            str(kubeconfig),
            "--port",
            "0",
        ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, start_new_session=True
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert lines[0] == f"Cluster {api.url}: 1 rollout(s) in all namespaces", lines
        match = URL.match(lines[1])
        assert match, lines
        view = get_json(match.group(1) + "api/rollouts/default/web")
        assert view["analysisRuns"][0]["judge"]["pValue"] == 0.31
    finally:
        process.terminate()
        process.wait(10)


def get_json(url: str) -> Any:
    """A blocking GET (the subprocess test has no event loop)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_headway_dashboard_against_an_unreachable_cluster_fails_before_listening(
    api: ApiServer, tmp_path: Path
) -> None:
    dead = write_kubeconfig("http://127.0.0.1:9", tmp_path / "dead")
    result = CliRunner().invoke(main, ["dashboard", "--kubeconfig", str(dead), "--port", "0"])
    assert result.exit_code == 1
    assert "cannot reach the cluster at http://127.0.0.1:9: check --context and --kubeconfig" in result.output
    missing = CliRunner().invoke(main, ["dashboard", "--kubeconfig", str(dead), "--context", "prod"])
    assert missing.exit_code == 1 and "no context 'prod' in the kubeconfig: check --context" in missing.output


@pytest.mark.asyncio
async def test_a_user_who_may_not_list_every_namespace_is_told_to_pick_one(serve: Serve) -> None:
    """A real API server answers 403 (a Status) to a cluster-wide LIST without RBAC for it."""

    async def forbidden(request: web.Request) -> web.Response:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": 'rollouts.headway.dev is forbidden: User "dev" cannot list resource "rollouts" cluster-wide',
            "reason": "Forbidden",
            "code": 403,
        }
        return web.json_response(status, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base = await serve(ClusterSource(KubeClient.for_server(f"http://127.0.0.1:{runner.addresses[0][1]}")))
        status, body = await call("GET", base + "api/rollouts")
    finally:
        await runner.cleanup()
    assert status == 503
    assert "403" in body["error"] and "cannot list resource" in body["error"]
    assert body["error"].endswith("(listing every namespace needs cluster-wide read access: try -n NAMESPACE)")


@pytest.mark.asyncio
async def test_a_dashboard_for_one_namespace_shows_only_it(api: ApiServer, dashboard: Dashboard, serve: Serve) -> None:
    base = await serve(ClusterSource(KubeClient.for_server(api.url), namespace="shop"))
    status, body = await call("GET", base + "api/rollouts")
    assert (status, [r["name"] for r in body["rollouts"]]) == (200, ["api"])
    status, body = await call("GET", base + "api/rollouts/default/web")
    assert (status, body["error"]) == (
        404,
        "no rollout named web in namespace default: this dashboard shows namespace shop",
    )
    status, body = await call("POST", base + "api/rollouts/default/web/abort", headers=AUTH)
    assert status == 404
    assert "abort" not in json.dumps(stored(api)["status"])  # nothing was written outside its namespace
