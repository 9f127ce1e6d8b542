"""A template this mode cannot measure becomes a run in Error at once, saying why (the cluster took the template:
nothing could refuse it at its apply)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from headway.bootstrap.kubernetes import router_for
from headway.core.actions import RunKind, StartAnalysisRun
from headway.kube.client import BlockingKube, analysis_runs, analysis_templates
from headway.routers.composite import CompositeRouter
from headway.routers.nginx import NginxRouter
from headway.routers.smi import SmiRouter
from headway.runtimes.kubernetes.engines import admit
from headway.runtimes.kubernetes.runs import KubernetesRunBackend
from headway.spec.rollout import RolloutAnalysis
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body, serve
from tests.scenarios.harness import make_rollout


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = serve()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


def _template(provider: dict[str, Any]) -> dict[str, Any]:
    metric = {"name": "errors", "successCondition": "result < 1", "provider": provider}
    return {"metadata": {"name": "rate", "namespace": "default"}, "spec": {"metrics": [metric]}}


def _start(api: ApiServer) -> dict[str, Any]:
    rollout = make_rollout({"canary": {"steps": [{"setWeight": 50}]}})
    analysis = RolloutAnalysis.model_validate({"templates": [{"templateName": "rate"}]})
    start = StartAnalysisRun(name="web-run", kind=RunKind.STEP, analysis=analysis, hash="new", stable_hash="old")
    KubernetesRunBackend(api.kube, GROUP).start_analysis(rollout, start)
    run = api.kube.get(analysis_runs(GROUP), "web-run", "default")
    assert run is not None
    return run


def test_a_run_on_the_embedded_proxys_counters_is_error_naming_the_mode(api: ApiServer) -> None:
    api.kube.create(analysis_templates(GROUP), _template({"plugin": {"proxy": {"window": "60s"}}}))

    run = _start(api)

    assert run["status"]["phase"] == "Error"
    assert "the kubernetes mode cannot run the 'proxy' metric provider" in run["status"]["message"]
    assert "metrics[0].provider" in run["status"]["message"]


def test_a_run_the_mode_can_measure_is_created_to_be_measured(api: ApiServer) -> None:
    api.kube.create(analysis_templates(GROUP), _template({"web": {"url": "http://127.0.0.1:1/"}}))

    run = _start(api)

    assert (run.get("status") or {}).get("phase") in (None, "", "Pending")
    assert run["spec"]["metrics"][0]["name"] == "errors"


def test_a_rollout_the_mode_cannot_drive_is_refused_naming_the_mode() -> None:
    body = rollout_body()
    body["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 20}, {"plugin": {"name": "example.com/step"}}]

    admission = admit(body)

    assert admission.rollout is None
    assert admission.problems == ("spec.strategy.canary.steps[1].plugin: the kubernetes mode cannot run plugin steps",)


def test_several_routers_are_all_driven() -> None:
    body = rollout_body()
    body["spec"]["strategy"]["canary"]["trafficRouting"] = {"nginx": {"stableIngress": "web"}, "smi": {}}
    rollout = admit(body).rollout
    assert rollout is not None

    router = router_for(rollout, BlockingKube.__new__(BlockingKube))  # building adapters makes no requests

    assert isinstance(router, CompositeRouter)
    assert [(name, type(each)) for name, each in router.routers] == [("nginx", NginxRouter), ("smi", SmiRouter)]
