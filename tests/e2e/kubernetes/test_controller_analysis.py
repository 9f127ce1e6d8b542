"""AnalysisRuns measured by the controller: templates from the API, a real web endpoint, secrets read live."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import generate_latest

from headway.core.actions import RunKind, StartAnalysisRun
from headway.core.errors import TemporaryError
from headway.engine.analysis import AnalysisExecutor
from headway.kube.client import (
    JOBS,
    SECRETS,
    KubeClient,
    analysis_runs,
    analysis_templates,
    cluster_analysis_templates,
    rollouts,
)
from headway.platforms.kubernetes import ROLLOUT_LABEL
from headway.providers.registry import default_registry
from headway.runtimes.kubernetes import analysis as analysis_module
from headway.runtimes.kubernetes import runs as runs_module
from headway.runtimes.kubernetes.analysis import ProviderTable, RunMeasurer
from headway.spec.analysis import AnalysisRun
from headway.spec.rollout import Rollout, RolloutAnalysis
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import (
    GROUP,
    Kubelet,
    canary_weight,
    eventually,
    install,
    rollout_body,
    running,
    status,
)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[str]]]:
    """A metrics endpoint on 127.0.0.1 answering a success rate of 0.5 (too low), recording auth headers."""
    seen: list[str] = []

    async def rate(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"rate": 0.5})

    app = web.Application()
    app.router.add_get("/rate", rate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/rate", seen
    finally:
        await runner.cleanup()


def web_template(url: str, *, kind: str = "AnalysisTemplate") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "success-rate"}
    if kind == "AnalysisTemplate":
        metadata["namespace"] = "default"
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "metrics-auth", "key": "token"}}}],
            "metrics": [
                {
                    "name": "success-rate",
                    "successCondition": "result >= 0.99",
                    "failureLimit": 0,
                    "provider": {
                        "web": {
                            "url": url,
                            "jsonPath": "{$.rate}",
                            "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
                        }
                    },
                }
            ],
        },
    }


async def _new_image(client: KubeClient, image: str) -> None:
    template = rollout_body(image=image)["spec"]["template"]
    await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})


async def _healthy(client: KubeClient) -> bool:
    return (await status(client)).get("phase") == "Healthy"


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
async def test_a_web_metric_below_its_condition_rolls_the_canary_back(
    api: ApiServer, client: KubeClient, endpoint: tuple[str, list[str]], scope: str
) -> None:
    url, seen = endpoint
    await install(client)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "metrics-auth", "namespace": "default"},
        "data": {"token": base64.b64encode(b"s3cret").decode()},
    }
    await client.create(SECRETS, secret)
    if scope == "cluster":
        await client.create(cluster_analysis_templates(GROUP), web_template(url, kind="ClusterAnalysisTemplate"))
    else:
        await client.create(analysis_templates(GROUP), web_template(url))
    ref = {"templateName": "success-rate", **({"clusterScope": True} if scope == "cluster" else {})}
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {"templates": [ref]}}, {"setWeight": 60}]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async with Kubelet(client), running(api) as controller:
        await eventually(lambda: _healthy(client), what="the first revision")
        await _new_image(client, "example/web:2")

        async def rolled_back() -> bool:
            current = await status(client)
            return current.get("abort") is True and await canary_weight(client) == 0

        await eventually(rolled_back, what="the rollback after the failed measurement")
        exported = generate_latest(controller.metrics.registry).decode()
        assert 'headway_analysis_runs_total{phase="Failed"} 1.0' in exported
        assert 'headway_analysis_metrics_total{phase="Failed"} 1.0' in exported

    (run,) = await client.list(analysis_runs(GROUP), "default")
    assert run["status"]["phase"] == "Failed"
    (result,) = run["status"]["metricResults"]
    assert result["name"] == "success-rate" and result["failed"] >= 1
    assert seen and seen[0] == "Bearer s3cret"  # read live from the Secret...
    assert "s3cret" not in str(run)  # ...and never written into the run
    assert run["spec"]["args"] == [
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "metrics-auth", "key": "token"}}}
    ]


async def test_a_run_whose_template_is_missing_is_an_error_and_rolls_back(api: ApiServer, client: KubeClient) -> None:
    await install(client)
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "nope"}]}}]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy(client), what="the first revision")
        await _new_image(client, "example/web:2")

        async def aborted() -> bool:
            return (await status(client)).get("abort") is True

        await eventually(aborted, what="the abort")

    (run,) = await client.list(analysis_runs(GROUP), "default")
    assert run["status"]["phase"] == "Error"
    assert "'nope' not found" in run["status"]["message"]


def job_template() -> dict[str, Any]:
    job = {"spec": {"template": {"spec": {"containers": [{"name": "check", "image": "busybox", "command": ["true"]}]}}}}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke", "namespace": "default"},
        "spec": {"metrics": [{"name": "smoke", "consecutiveErrorLimit": 0, "provider": {"job": job}}]},
    }


@pytest.mark.parametrize("outcome", ["Complete", "Failed"])
async def test_a_job_metric_runs_a_job_owned_by_the_run_and_its_outcome_decides(
    api: ApiServer, client: KubeClient, outcome: str
) -> None:
    await install(client)
    await client.create(analysis_templates(GROUP), job_template())
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "smoke"}]}}]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy(client), what="the first revision")
        await _new_image(client, "example/web:2")

        async def one_job() -> bool:
            return len(await client.list(JOBS, "default")) == 1

        await eventually(one_job, what="the metric's Job")
        (job,) = await client.list(JOBS, "default")
        (run,) = await client.list(analysis_runs(GROUP), "default")
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "AnalysisRun",
            run["metadata"]["name"],
            run["metadata"]["uid"],
        )
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
        # The kubelet's and the Job controller's part: the Job finishes.
        finished = {"conditions": [{"type": outcome, "status": "True", "reason": "Test"}]}
        if outcome == "Complete":
            finished["succeeded"] = 1  # type: ignore[assignment]
        await client.patch(JOBS, job["metadata"]["name"], "default", {"status": finished}, status=True)

        async def decided() -> bool:
            current = await status(client)
            if outcome == "Failed":
                return current.get("abort") is True
            return current.get("phase") == "Healthy" and current.get("stableRS") == current.get("currentPodHash")

        await eventually(decided, what=f"the rollout to act on a {outcome} Job")

    (run,) = await client.list(analysis_runs(GROUP), "default")
    # As in Argo, a failed Job is a Failed measurement (a verdict), so the run ends Failed, not Error.
    assert run["status"]["phase"] == ("Successful" if outcome == "Complete" else "Failed")


async def test_completed_runs_beyond_the_history_limits_are_deleted_oldest_first(client: KubeClient) -> None:
    measurer = RunMeasurer(client, GROUP, ProviderTable(default_registry()))
    for index, phase in enumerate(["Successful", "Successful", "Successful", "Failed", "Failed", "Running"]):
        body = {
            "metadata": {
                "name": f"run-{index}",
                "namespace": "default",
                "labels": {ROLLOUT_LABEL: "web"},
                "creationTimestamp": f"2026-01-01T00:00:0{index}Z",
            },
            "spec": {"metrics": []},
        }
        await client.create(analysis_runs(GROUP), body)
        await client.patch(analysis_runs(GROUP), f"run-{index}", "default", {"status": {"phase": phase}}, status=True)
    await measurer.measure("default", "web", datetime.now(UTC), (1, 1))
    left = sorted(run["metadata"]["name"] for run in await client.list(analysis_runs(GROUP), "default"))
    assert left == ["run-2", "run-4", "run-5"]


async def test_one_run_that_cannot_be_measured_is_error_and_the_others_are_still_measured(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed, run by run: a crash measuring one run makes that run Error; a provider nobody has makes its
    run Error at its first measurement; a Secret the API fails to give is an Error measurement; the others go on."""
    static = {"plugin": {"static": {"values": [0.5]}}}
    runs = {
        "broken": [{"name": "rate", "provider": static}],
        "checked": [{"name": "rate", "successCondition": "result >= 0.9", "provider": static}],
        "unknown": [{"name": "rate", "provider": {"plugin": {"nosuchprovider": {}}}}],
        "secretive": [
            {"name": "rate", "interval": "1m", "provider": {"web": {"url": "http://127.0.0.1:9/{{args.t}}"}}}
        ],
    }
    for name, metrics in runs.items():
        args = (
            [{"name": "t", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}}] if name == "secretive" else []
        )
        meta = {"name": name, "namespace": "default", "labels": {ROLLOUT_LABEL: "web"}}
        await client.create(analysis_runs(GROUP), {"metadata": meta, "spec": {"metrics": metrics, "args": args}})

    class Exploding(AnalysisExecutor):
        def load(self, run: AnalysisRun) -> None:
            if run.metadata.name == "broken":
                raise RuntimeError("a bug in measuring")
            super().load(run)

    real_get = client.get

    async def get(kind: Any, name: str, namespace: str | None = None) -> Any:
        if kind is SECRETS:
            raise TemporaryError("connection reset by peer")
        return await real_get(kind, name, namespace)

    monkeypatch.setattr(analysis_module, "AnalysisExecutor", Exploding)
    monkeypatch.setattr(client, "get", get)
    measurer = RunMeasurer(client, GROUP, ProviderTable(default_registry()))

    await measurer.measure("default", "web", datetime.now(UTC), (5, 5))

    found = {run["metadata"]["name"]: run["status"] for run in await client.list(analysis_runs(GROUP), "default")}
    assert found["checked"]["phase"] == "Failed"
    assert found["broken"]["phase"] == "Error"
    assert found["broken"]["message"] == "the analysis could not be measured: RuntimeError: a bug in measuring"
    assert found["unknown"]["phase"] == "Error"
    assert "no metric provider for type 'nosuchprovider'" in found["unknown"]["message"]
    assert found["secretive"]["phase"] == "Running"
    (measured,) = found["secretive"]["metricResults"][0]["measurements"]
    assert measured["phase"] == "Error"
    assert measured["message"] == "args.t: reading secret 'api' failed: connection reset by peer"


async def test_a_run_whose_templates_cannot_be_resolved_for_a_bug_is_created_in_error(
    api: ApiServer, client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resolve(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in resolving")

    monkeypatch.setattr(runs_module, "resolve_run_spec", resolve)
    body = rollout_body(steps=[{"analysis": {"templates": [{"templateName": "smoke"}]}}])
    rollout = Rollout.model_validate(await client.create(rollouts(GROUP), body))
    analysis = RolloutAnalysis.model_validate({"templates": [{"templateName": "smoke"}]})
    start = StartAnalysisRun(name="web-run", kind=RunKind.STEP, analysis=analysis, hash="abc", stable_hash="def")

    await asyncio.to_thread(runs_module.KubernetesRunBackend(api.kube, GROUP).start_analysis, rollout, start)

    run = await client.get(analysis_runs(GROUP), "web-run", "default")
    assert run is not None
    assert run["status"]["phase"] == "Error"
    assert run["status"]["message"] == "templates: could not be resolved: KeyError: 'a bug in resolving'"
