"""The cluster dashboard and ``get rollout`` following a rollout the REAL controller drives (emulator + kubelet).

Where the other cluster dashboard tests write what the controller would, here the controller itself moves the
canary, creates the step's AnalysisRun and measures it against a real web endpoint, and posts Events; the views
must show exactly that, and promote through the dashboard must let the controller finish the rollout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from click.testing import CliRunner

from headway.cli.main import main
from headway.dashboard.app import create_app
from headway.kube.client import KubeClient, analysis_templates, rollouts
from headway.runtimes.kubernetes.dashboard_source import ClusterSource
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import (
    GROUP,
    Kubelet,
    eventually,
    install,
    rate_endpoint,
    rollout_body,
    running,
    status,
)
from tests.e2e.kubernetes.test_cli_cluster import write_kubeconfig

TOKEN = "cluster-live-token"

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[str]:
    """A metrics endpoint on 127.0.0.1 answering a success rate of 0.995 (good)."""
    async with rate_endpoint({"rate": 0.995}) as url:
        yield url


def template(url: str) -> dict[str, Any]:
    metric = {
        "name": "success-rate",
        "successCondition": "result >= 0.99",
        "count": 2,
        "interval": "1s",
        "provider": {"web": {"url": url, "jsonPath": "{$.rate}"}},
    }
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate", "namespace": "default"},
        "spec": {"metrics": [metric]},
    }


async def get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.mark.slow
async def test_the_dashboard_shows_what_the_controller_did_and_its_promote_finishes_the_rollout(
    api: ApiServer, client: KubeClient, endpoint: str, tmp_path: Any
) -> None:
    await install(client)
    await client.create(analysis_templates(GROUP), template(endpoint))
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
        {"setWeight": 60},
        {"pause": {}},
    ]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))
    source = ClusterSource(KubeClient.for_server(api.url), poll_seconds=0.2)
    runner = web.AppRunner(create_app(source, token=TOKEN, heartbeat_seconds=1.0), shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with Kubelet(client), running(api):

            async def phase_is(phase: str) -> bool:
                return (await status(client)).get("phase") == phase

            await eventually(lambda: phase_is("Healthy"), what="the first revision")
            template_body = rollout_body(image="example/web:2")["spec"]["template"]
            await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template_body}})

            async def paused_at_60() -> bool:
                current = await status(client)
                weight = ((current.get("canary") or {}).get("weights") or {}).get("canary", {}).get("weight")
                return current.get("phase") == "Paused" and weight == 60

            await eventually(paused_at_60, timeout=30, what="the canary to pass its analysis and pause at 60%")

            view = await get(base + "api/rollouts/default/web")
            assert (view["phase"], view["canaryWeight"], view["step"]) == ("Paused", 60, 3)
            roles = {r["role"]: (r["image"], r["ready"], r["replicas"]) for r in view["revisions"] if r["role"]}
            assert roles["stable"][0] == "example/web:1" and roles["canary"][0] == "example/web:2"
            (run,) = view["analysisRuns"]
            assert (run["phase"], run["revision"]) == ("Successful", view["currentHash"])
            assert [(m["metric"], m["value"], m["phase"]) for m in run["measurements"]] == [
                ("success-rate", 0.995, "Successful")
            ] * 2
            assert view["events"], "the controller's Events on the rollout"
            assert [p["set"] for p in view["weightHistory"]][-1] == 60

            kubeconfig = write_kubeconfig(api.url, tmp_path / "kubeconfig")
            text = await asyncio.to_thread(
                CliRunner().invoke, main, ["get", "rollout", "web", "--kubeconfig", str(kubeconfig)]
            )
            assert text.exit_code == 0, text.output
            assert f"web-{view['currentHash']}" in text.output
            assert "AnalysisRun  ✔ Successful  ✔ 2" in text.output
            assert "success-rate: 0.995 ✔ 0.995 ✔" in text.output
            assert "example/web:2 (canary)" in text.output and "example/web:1 (stable)" in text.output

            async with aiohttp.ClientSession() as session:
                url = base + "api/rollouts/default/web/promote"
                async with session.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, json={}) as response:
                    assert response.status == 200, await response.text()

            async def done() -> bool:
                current = await status(client)
                return current.get("phase") == "Healthy" and current.get("stableRS") == current.get("currentPodHash")

            await eventually(done, what="the controller to finish the rollout after the dashboard's promote")
            listed = await get(base + "api/rollouts")
            assert [(r["name"], r["phase"], r["currentImage"]) for r in listed["rollouts"]] == [
                ("web", "Healthy", "example/web:2")
            ]
    finally:
        await runner.cleanup()
        await source.close()
        await source.client.close()
    assert json.dumps(view)  # the detail view is plain JSON (no NaN/Infinity)
