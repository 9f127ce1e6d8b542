"""A Rollout's experiment step runs in the cluster: template ReplicaSets, analyses, a verdict, scale-down.

The controller (embedded, over real HTTP against the fidelity emulator) drives the Rollout and creates the
Experiment, and its worker advances the Experiment (`ExperimentRunner.advance_all`) and measures its runs before
each pass. The controller's clock is the wall clock plus a skew the test moves forward (`Clock`), so a 30 s
duration or scale-down delay passes when the test says so instead of in 30 real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from headway.core.actions import StartExperiment
from headway.kube.client import (
    REPLICA_SETS,
    BlockingKube,
    KubeClient,
    analysis_runs,
    analysis_templates,
    experiments,
    rollouts,
)
from headway.platforms.kubernetes import HASH_LABEL, ROLLOUT_LABEL
from headway.runtimes.kubernetes import experiments as experiments_module
from headway.runtimes.kubernetes.controller import Controller
from headway.runtimes.kubernetes.experiments import (
    EXPERIMENT_NAME_ANNOTATION,
    SCALE_DOWN_DEADLINE_ANNOTATION,
    ExperimentRunner,
)
from headway.runtimes.kubernetes.runs import KubernetesRunBackend
from headway.spec.rollout import Rollout, RolloutExperimentStep
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

pytestmark = pytest.mark.asyncio
EXPERIMENTS = experiments(GROUP)


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[dict[str, float]]:
    """A metrics endpoint on 127.0.0.1 answering ``{"rate": <value>}``; the test sets the value."""
    value = {"rate": 1.0}
    async with rate_endpoint(value) as url:
        value["port"] = float(url.rsplit(":", 1)[1].split("/")[0])
        yield value


def success_rate(port: float) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate", "namespace": "default"},
        "spec": {
            "args": [{"name": "canary-hash"}],
            "metrics": [
                {
                    "name": "success-rate",
                    "successCondition": "result >= 0.99",
                    "failureLimit": 0,
                    "provider": {"web": {"url": f"http://127.0.0.1:{int(port)}/rate", "jsonPath": "{$.rate}"}},
                }
            ],
        },
    }


EXPERIMENT_STEP: dict[str, Any] = {
    "duration": "30s",
    "templates": [
        {"name": "baseline", "specRef": "stable"},
        {"name": "candidate", "specRef": "canary", "replicas": 2, "metadata": {"labels": {"role": "candidate"}}},
    ],
    "analyses": [
        {
            "name": "rate",
            "templateName": "success-rate",
            "args": [{"name": "canary-hash", "value": "{{templates.candidate.podTemplateHash}}"}],
        }
    ],
}


class Clock:
    """The controller's clock: wall time plus a skew the test moves forward. A jump wakes nothing by itself (the
    worker sleeps until its requeue, in real seconds), so `running` nudges the Rollout's worker every 0.2 s."""

    def __init__(self) -> None:
        self.skew = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skew)

    @contextlib.asynccontextmanager
    async def running(self, controller: Controller) -> AsyncIterator[Clock]:
        async def nudge() -> None:
            while True:
                controller.wake("default/web")
                await asyncio.sleep(0.2)

        task = asyncio.create_task(nudge())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _experiment(client: KubeClient) -> dict[str, Any]:
    found = await client.list(EXPERIMENTS, "default", {ROLLOUT_LABEL: "web"})
    assert len(found) == 1, [obj["metadata"]["name"] for obj in found]
    return found[0]


async def _phase(client: KubeClient) -> str:
    found = await client.list(EXPERIMENTS, "default", {ROLLOUT_LABEL: "web"})
    return str((found[0].get("status") or {}).get("phase") or "") if found else ""


async def _template_sets(client: KubeClient, experiment: str) -> dict[str, dict[str, Any]]:
    sets = await client.list(REPLICA_SETS, "default")
    mine = [rs for rs in sets if (rs["metadata"].get("annotations") or {}).get(EXPERIMENT_NAME_ANNOTATION)]
    return {rs["metadata"]["name"].removeprefix(f"{experiment}-"): rs for rs in mine}


async def _start(client: KubeClient, endpoint: dict[str, float]) -> None:
    """v1 rolled out, then v2 with the experiment step."""
    await install(client)
    await client.create(analysis_templates(GROUP), success_rate(endpoint["port"]))
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"experiment": EXPERIMENT_STEP}, {"setWeight": 60}]
    await client.create(rollouts(GROUP), rollout_body(steps=steps))

    async def healthy() -> bool:
        return (await status(client)).get("phase") == "Healthy"

    await eventually(healthy, what="v1 healthy")
    template = rollout_body(image="example/web:2")["spec"]["template"]
    await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})


async def test_an_experiment_step_runs_its_templates_for_the_duration_then_the_rollout_continues(
    api: ApiServer, client: KubeClient, endpoint: dict[str, float]
) -> None:
    clock = Clock()
    async with running(api, clock=clock.now) as controller, Kubelet(client), clock.running(controller) as wiring:
        await _start(client, endpoint)

        async def experiment_running() -> bool:
            return await _phase(client) == "Running"

        await eventually(experiment_running, what="experiment Running")
        experiment = await _experiment(client)
        name = experiment["metadata"]["name"]
        sets = await _template_sets(client, name)
        assert sorted(sets) == ["baseline", "candidate"]
        baseline, candidate = sets["baseline"], sets["candidate"]
        assert baseline["spec"]["replicas"] == 1 and candidate["spec"]["replicas"] == 2
        assert baseline["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:1"
        assert candidate["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2"
        assert candidate["spec"]["template"]["metadata"]["labels"]["role"] == "candidate"
        rollout_hashes = {rs["metadata"]["labels"].get(HASH_LABEL) for rs in await _rollout_sets(client)}
        for rs in (baseline, candidate):
            pod_hash = rs["metadata"]["labels"][HASH_LABEL]
            assert pod_hash not in rollout_hashes, "the Rollout's Services must not select experiment pods"
            assert rs["spec"]["selector"]["matchLabels"][HASH_LABEL] == pod_hash
            assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == pod_hash
            assert rs["metadata"]["ownerReferences"][0]["uid"] == experiment["metadata"]["uid"]
        assert experiment["status"]["availableAt"]

        async def analysis_passed() -> bool:
            runs = ((await _experiment(client)).get("status") or {}).get("analysisRuns") or []
            return [(r["name"], r["phase"]) for r in runs] == [("rate", "Successful")]

        await eventually(analysis_passed, what="the experiment's analysis Successful")
        run = await client.get(analysis_runs(GROUP), f"{name}-rate", "default")
        assert run is not None
        assert run["metadata"]["ownerReferences"][0]["uid"] == experiment["metadata"]["uid"]
        assert {"name": "canary-hash", "value": candidate["metadata"]["labels"][HASH_LABEL]} in run["spec"]["args"]
        revisions = {rs["metadata"]["labels"][HASH_LABEL]: rs for rs in await _rollout_sets(client)}
        images = {h: rs["spec"]["template"]["spec"]["containers"][0]["image"] for h, rs in revisions.items()}
        assert images[run["spec"]["revision"]] == "example/web:2"
        assert images[run["spec"]["stableRevision"]] == "example/web:1"
        assert await _phase(client) == "Running", "the analysis passed; the duration has not"

        wiring.skew += 31  # the duration passes
        await eventually(lambda: _is(client, "Successful"), what="experiment Successful")

        async def rollout_went_on() -> bool:
            return (await status(client)).get("phase") == "Healthy"

        await eventually(rollout_went_on, what="the rollout past the experiment step, Healthy")
        await eventually(lambda: _scale_down_due(client, name), what="scale-down deadlines on the ReplicaSets")
        sets = await _template_sets(client, name)
        assert {rs["spec"]["replicas"] for rs in sets.values()} == {1, 2}, "kept for scaleDownDelaySeconds"

        wiring.skew += 31  # the scale-down delay passes
        await eventually(lambda: _scaled_to_zero(client, name), what="template ReplicaSets scaled to 0")
        await eventually(lambda: _done(client, wiring), what="the runner finished: no more requeues")


async def test_a_failing_analysis_fails_the_experiment_and_aborts_the_rollout(
    api: ApiServer, client: KubeClient, endpoint: dict[str, float]
) -> None:
    endpoint["rate"] = 0.5
    clock = Clock()
    async with running(api, clock=clock.now) as controller, Kubelet(client), clock.running(controller) as wiring:
        await _start(client, endpoint)
        await eventually(lambda: _is(client, "Failed"), what="experiment Failed")
        experiment = await _experiment(client)
        name = experiment["metadata"]["name"]
        assert experiment["status"]["analysisRuns"][0]["phase"] == "Failed"
        # The analysis failed it, not the templates: they were Running, and turn Successful as the experiment
        # terminates (Argo's order), depending on which advance this read follows.
        assert {t["status"] for t in experiment["status"]["templateStatuses"]} <= {"Running", "Successful"}

        async def aborted() -> bool:
            return bool((await status(client)).get("abort"))

        await eventually(aborted, what="the rollout aborted on the failed experiment")
        await eventually(lambda: _scale_down_due(client, name), what="scale-down deadlines on the ReplicaSets")
        wiring.skew += 31
        await eventually(lambda: _scaled_to_zero(client, name), what="template ReplicaSets scaled to 0")


async def _is(client: KubeClient, phase: str) -> bool:
    return await _phase(client) == phase


async def _rollout_sets(client: KubeClient) -> list[dict[str, Any]]:
    return await client.list(REPLICA_SETS, "default", {ROLLOUT_LABEL: "web"})


async def _scaled_to_zero(client: KubeClient, experiment: str) -> bool:
    sets = await _template_sets(client, experiment)
    return len(sets) == 2 and all(rs["spec"]["replicas"] == 0 for rs in sets.values())


async def _scale_down_due(client: KubeClient, experiment: str) -> bool:
    sets = await _template_sets(client, experiment)
    return len(sets) == 2 and all(
        SCALE_DOWN_DEADLINE_ANNOTATION in rs["metadata"]["annotations"] for rs in sets.values()
    )


async def _done(client: KubeClient, clock: Clock) -> bool:
    """The runner has nothing left to do for the Rollout's Experiments (it would ask for no further look)."""
    body = await client.get(rollouts(GROUP), "web", "default")
    assert body is not None
    runner = ExperimentRunner(BlockingKube(client, asyncio.get_running_loop()), GROUP)
    return await asyncio.to_thread(runner.advance_all, Rollout.model_validate(body), clock.now()) is None


# --- a hand-written Experiment, advanced directly -------------------------------------------------------------


def hand_written(name: str = "compare", **spec: Any) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": "cmp"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "templates": [{"name": "one", "replicas": 2, "selector": {"matchLabels": {"app": "cmp"}}, "template": pod}],
            "scaleDownDelaySeconds": 0,
            **spec,
        },
    }


async def _advance(kube: BlockingKube, name: str = "compare") -> float | None:
    return await asyncio.to_thread(ExperimentRunner(kube, GROUP).advance, "default", name, datetime.now(UTC))


async def test_a_hand_written_experiment_runs_until_terminated_then_scales_down(client: KubeClient) -> None:
    kube = BlockingKube(client, asyncio.get_running_loop())
    await client.create(EXPERIMENTS, hand_written())
    async with Kubelet(client):

        async def running_() -> bool:
            await _advance(kube)
            obj = await client.get(EXPERIMENTS, "compare", "default")
            return ((obj or {}).get("status") or {}).get("phase") == "Running"

        await eventually(running_, what="hand-written experiment Running")
        rs = await client.get(REPLICA_SETS, "compare-one", "default")
        assert rs is not None and rs["spec"]["replicas"] == 2
        assert rs["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"

        await client.patch(EXPERIMENTS, "compare", "default", {"spec": {"terminate": True}})
        delays: list[float | None] = []

        async def finished() -> bool:
            delays.append(await _advance(kube))
            return delays[-1] is None

        await eventually(finished, what="the runner done with the terminated experiment")
    obj = await client.get(EXPERIMENTS, "compare", "default")
    assert obj is not None
    assert obj["status"]["phase"] == "Successful"
    assert obj["status"]["message"] == "Experiment terminated"
    rs = await client.get(REPLICA_SETS, "compare-one", "default")
    assert rs is not None and rs["spec"]["replicas"] == 0


async def test_an_invalid_experiment_is_marked_error_naming_the_field(client: KubeClient) -> None:
    kube = BlockingKube(client, asyncio.get_running_loop())
    body = hand_written("broken")
    del body["spec"]["templates"][0]["selector"]
    await client.create(EXPERIMENTS, body)

    assert await _advance(kube, "broken") is None

    obj = await client.get(EXPERIMENTS, "broken", "default")
    assert obj is not None
    assert obj["status"]["phase"] == "Error"
    assert obj["status"]["message"].startswith("spec.templates[0].selector: ")
    assert await client.get(REPLICA_SETS, "broken-one", "default") is None


async def test_an_experiment_that_cannot_be_advanced_is_error_saying_why_not_retried_for_ever(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in deciding")

    monkeypatch.setattr(experiments_module, "decide_experiment", broken)
    kube = BlockingKube(client, asyncio.get_running_loop())
    body = hand_written()
    body["metadata"]["labels"] = {ROLLOUT_LABEL: "web"}
    await client.create(EXPERIMENTS, body)
    rollout = Rollout.model_validate(rollout_body(steps=[{"experiment": EXPERIMENT_STEP}]))

    delay = await asyncio.to_thread(ExperimentRunner(kube, GROUP).advance_all, rollout, datetime.now(UTC))

    obj = await client.get(EXPERIMENTS, "compare", "default")
    assert obj is not None
    assert (obj["status"]["phase"], delay) == ("Error", None)
    assert obj["status"]["message"] == "the experiment could not be advanced: RuntimeError: a bug in deciding"


async def test_an_experiment_step_without_a_stable_replica_set_is_created_in_error(
    api: ApiServer, client: KubeClient
) -> None:
    body = rollout_body(steps=[{"experiment": EXPERIMENT_STEP}])
    rollout = Rollout.model_validate(await client.create(rollouts(GROUP), body))
    step = RolloutExperimentStep.model_validate(EXPERIMENT_STEP)
    start = StartExperiment(name="web-exp", experiment=step, canary_hash="abc", stable_hash="def")

    await asyncio.to_thread(KubernetesRunBackend(api.kube, GROUP).start_experiment, rollout, start)

    obj = await client.get(EXPERIMENTS, "web-exp", "default")
    assert obj is not None
    assert obj["status"]["phase"] == "Error"
    assert obj["status"]["message"] == "experiment.templates[0].specRef: no stable ReplicaSet web-def"
    assert obj["metadata"]["ownerReferences"][0]["uid"] == rollout.metadata.uid
