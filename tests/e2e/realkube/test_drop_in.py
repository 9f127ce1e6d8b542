"""Drop-in for Argo Rollouts on a real API server with Argo's own CRDs installed (tests/data/argo-crds): Rollout,
AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment, as Argo generates them from its types.

Argo's Rollout CRD serves /scale from ``.status.HPAReplicas`` and prunes every status field its schema does not
name; Headway's own status fields must survive inside that schema, or old revisions are never scaled down and the
progress clock restarts on every pass. Argo's AnalysisRun and Experiment CRDs have no /status subresource (their
status is written with the object) and prune every spec and status field their schemas do not name.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from headway.kube.client import (
    EVENTS,
    REPLICA_SETS,
    KubeClient,
    analysis_runs,
    analysis_templates,
    experiments,
    rollouts,
)
from headway.platforms.kubernetes import HASH_LABEL, PODS
from headway.runtimes.kubernetes.crds import crds
from headway.runtimes.kubernetes.dashboard_source import ClusterSource
from headway.runtimes.kubernetes.operate import Cluster
from headway.stores.k8s_status import EXTENSIONS_CONDITION, status_of
from tests.e2e.realkube.cluster import (
    RealCluster,
    eventually,
    healthy_on,
    kubectl,
    rollout_body,
    running,
    services,
    set_image,
    status,
    web_template,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ARGO = "argoproj.io"
ARGO_CRDS = Path(__file__).resolve().parents[2] / "data" / "argo-crds"


ARGO_KINDS = ("rollout", "analysis-template", "cluster-analysis-template", "analysis-run", "experiment")


def _install_argo_crds(cluster: RealCluster, *kinds: str) -> None:
    files = [argument for kind in kinds for argument in ("-f", str(ARGO_CRDS / f"{kind}-crd.yaml"))]
    kubectl(cluster.admin, "apply", *files)
    kubectl(cluster.admin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


ARGO_CRD_NAMES = tuple(
    f"{plural}.{ARGO}"
    for plural in ("rollouts", "analysistemplates", "clusteranalysistemplates", "analysisruns", "experiments")
)


@pytest.fixture
def argo_crds(real_cluster: RealCluster) -> RealCluster:
    """Argo's five CRDs, as vendored in tests/data/argo-crds, in place of deploy/base's argoproj.io ones; applied
    only where the cluster does not serve them already (Argo's carry controller-gen's annotation, ours do not:
    one GET instead of an apply and a wait per test)."""
    marks = kubectl(
        real_cluster.admin,
        "get", "crd", *ARGO_CRD_NAMES, "--ignore-not-found",
        "-o", "jsonpath={range .items[*]}{.metadata.annotations.controller-gen\\.kubebuilder\\.io/version}{'\\n'}{end}",
    )  # fmt: skip
    if marks.split() != ["v0.7.0"] * len(ARGO_CRD_NAMES):
        _install_argo_crds(real_cluster, *ARGO_KINDS)
    return real_cluster


def _scale(cluster: RealCluster, namespace: str) -> dict[str, Any]:
    path = f"/apis/{ARGO}/v1alpha1/namespaces/{namespace}/rollouts/web/scale"
    found: dict[str, Any] = json.loads(kubectl(cluster.admin, "get", "--raw", path))
    return found


async def test_the_scale_subresource_of_argos_crd_reports_the_rollouts_pods(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="healthy")
        scale = _scale(argo_crds, namespace)
        assert scale["status"] == {"replicas": 2, "selector": "app=web"}
        kubectl(argo_crds.admin, "-n", namespace, "scale", f"rollouts.{ARGO}/web", "--replicas=3")

        async def scaled() -> bool:
            return bool(_scale(argo_crds, namespace)["status"].get("replicas") == 3)

        await eventually(scaled, what="/scale to report the 3 pods an HPA asked for")


async def test_headways_own_status_fields_survive_argos_schema_and_old_revisions_scale_down(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await services(admin, namespace, "web-active")
    blue_green = {
        "blueGreen": {"activeService": "web-active", "autoPromotionEnabled": False, "scaleDownDelaySeconds": 2}
    }
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO, strategy=blue_green))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="blue healthy")
        await set_image(admin, namespace, "example/web:2", group=ARGO)

        async def paused() -> bool:
            body = await admin.get(rollouts(ARGO), "web", namespace)
            return bool(((body or {}).get("status") or {}).get("pauseConditions"))

        await eventually(paused, what="green waiting for promotion")
        await Cluster(admin, namespace, group=ARGO).promote("web")
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2", group=ARGO), what="green promoted")

        deadlines: list[dict[str, Any]] = []

        async def blue_scaled_down() -> bool:
            body = await admin.get(rollouts(ARGO), "web", namespace)
            deadlines.append(status_of(body or {}).scale_down_at)  # as the controller's next pass reads it
            sizes = {
                rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
                for rs in await admin.list(REPLICA_SETS, namespace)
            }
            return sizes == {"example/web:1": 0, "example/web:2": 2}

        await eventually(blue_scaled_down, what="blue scaled down after scaleDownDelaySeconds (2 s)")
    assert any(deadlines), "the scale-down deadline was never kept in the status"
    body = await admin.get(rollouts(ARGO), "web", namespace)
    assert body is not None
    raw = body["status"]
    assert "scaleDownAt" not in raw  # Argo's schema has no such field: kept in the condition instead
    assert [c["type"] for c in raw["conditions"]].count(EXTENSIONS_CONDITION) == 1


def _headway(cluster: RealCluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("headway")),
        *args,
        "-n",
        namespace,
        "--kubeconfig",
        str(cluster.admin),
    ]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWAY_API_GROUP": ""}
    )


async def test_the_cli_finds_argo_rollouts_by_discovery_or_by_api_group(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="healthy")
        await set_image(admin, namespace, "example/web:2", group=ARGO)

        async def paused() -> bool:
            return bool((await status(admin, namespace, group=ARGO)).get("pauseConditions"))

        await eventually(paused, what="the canary paused")
        # Both groups are served here (deploy/base's CRDs and Argo's): the rollout is found where it is.
        shown = await asyncio.to_thread(_headway, argo_crds, namespace, "get", "rollout", "web", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["name"] == "web"
        wrong = await asyncio.to_thread(_headway, argo_crds, namespace, "promote", "web", "--api-group", "headway.dev")
        assert wrong.returncode != 0 and "no rollout named web" in wrong.stderr
        done = await asyncio.to_thread(_headway, argo_crds, namespace, "promote", "web", "--api-group", ARGO)
        assert done.returncode == 0, done.stderr
        await eventually(lambda: healthy_on(admin, namespace, "example/web:2", group=ARGO), what="promoted by the CLI")


async def test_the_dashboard_without_api_group_shows_the_rollouts_of_every_group_the_cluster_serves(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """As the CLI finds a rollout by discovery (above), so does ``headway dashboard`` without ``--api-group``."""
    await admin.create(rollouts(ARGO), rollout_body(namespace, "argo-web", group=ARGO))
    await admin.create(rollouts("headway.dev"), rollout_body(namespace, "own-web"))
    source = ClusterSource(admin, namespace=namespace, group=None)
    try:
        listed = await source.list_rollouts()
        shown = await source.get_rollout("argo-web", namespace)
    finally:
        await source.close()
    assert sorted(view.name for view in listed) == ["argo-web", "own-web"]
    assert shown.name == "argo-web"


async def test_a_step_analysis_is_measured_inside_argos_analysisrun_crd(
    argo_crds: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    """Argo's AnalysisRun CRD has no /status subresource: the measurements must still reach the run (else the step
    waits for a verdict that never comes) and survive its schema, and a bad canary must still be rolled back."""
    url, answer = rate
    await admin.create(analysis_templates(ARGO), web_template(namespace, url, group=ARGO))
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
    ]
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO, strategy={"canary": {"steps": steps}}))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="revision 1")
        await set_image(admin, namespace, "example/web:2", group=ARGO)
        await eventually(
            lambda: healthy_on(admin, namespace, "example/web:2", group=ARGO), what="promoted after a good analysis"
        )
        answer["rate"] = 0.5
        await set_image(admin, namespace, "example/web:3", group=ARGO)

        async def rolled_back() -> bool:
            current = await status(admin, namespace, group=ARGO)
            return current.get("abort") is True and current.get("phase") == "Degraded"

        await eventually(rolled_back, what="the rollback after a failed analysis")
    runs = {run["status"]["phase"]: run for run in await admin.list(analysis_runs(ARGO), namespace)}
    assert sorted(runs) == ["Failed", "Successful"]
    good = runs["Successful"]
    [result] = good["status"]["metricResults"]
    assert result["phase"] == "Successful" and result["measurements"][0]["value"] == "1.0"
    assert good["metadata"]["labels"][HASH_LABEL]  # the revision it judged, kept where Argo's schema keeps it


async def test_an_experiment_step_runs_inside_argos_experiment_crd(
    argo_crds: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    """An experiment step with an analysis, on Argo's Experiment and AnalysisRun CRDs (no /status subresource,
    a pruning schema): the Experiment runs its template, its analysis is measured, it completes Successful, and
    the Rollout goes on to be promoted."""
    url, _ = rate
    await admin.create(analysis_templates(ARGO), web_template(namespace, url, group=ARGO))
    experiment = {
        "duration": "2s",
        "templates": [{"name": "canary", "specRef": "canary", "replicas": 1}],
        "analyses": [{"name": "rate", "templateName": "success-rate"}],
    }
    steps: list[dict[str, Any]] = [{"experiment": experiment}, {"setWeight": 50}]
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO, strategy={"canary": {"steps": steps}}))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="revision 1")
        await set_image(admin, namespace, "example/web:2", group=ARGO)
        await eventually(
            lambda: healthy_on(admin, namespace, "example/web:2", group=ARGO),
            timeout=60,
            what="promoted after a successful experiment",
        )
    [found] = await admin.list(experiments(ARGO), namespace)
    assert found["status"]["phase"] == "Successful", found["status"]
    assert [t["name"] for t in found["status"]["templateStatuses"]] == ["canary"]
    [owned] = [
        rs
        for rs in await admin.list(REPLICA_SETS, namespace)
        if [ref["name"] for ref in rs["metadata"].get("ownerReferences") or []] == [found["metadata"]["name"]]
    ]
    assert owned["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2"  # the canary's copy
    assert int(owned["status"].get("availableReplicas") or 0) == 1  # it ran (scaled down only 30 s after)
    [run] = await admin.list(analysis_runs(ARGO), namespace)
    assert run["status"]["phase"] == "Successful"


async def _update_until_aborted(cluster: RealCluster, namespace: str, admin: KubeClient, what: str) -> None:
    """An Argo Rollout with an analysis step on ``success-rate``: revision 1 Healthy, then an update, until the
    rollout is aborted."""
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "success-rate"}]}}]
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO, strategy={"canary": {"steps": steps}}))
    async with running(cluster, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="revision 1")
        await set_image(admin, namespace, "example/web:2", group=ARGO)

        async def aborted() -> bool:
            return (await status(admin, namespace, group=ARGO)).get("abort") is True

        await eventually(aborted, what=what)


async def test_a_run_whose_crd_drops_a_field_of_its_template_is_an_error_not_a_different_measurement(
    argo_crds: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    """A cluster whose AnalysisTemplate CRD is newer than its AnalysisRun CRD (here: Headway's generated template
    CRD beside Argo's run CRD): the template's ``consecutiveSuccessLimit`` is pruned from the run Headway creates,
    which would then judge the canary by other rules than its template's. The run is Error, naming the field, and
    the rollout aborts."""
    [newer] = [crd for crd in crds(ARGO) if crd["spec"]["names"]["kind"] == "AnalysisTemplate"]
    path = argo_crds.state / f"newer-template-crd-{namespace}.yaml"
    path.write_text(json.dumps(newer))
    kubectl(argo_crds.admin, "apply", "-f", str(path))
    kubectl(argo_crds.admin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    try:
        await _cut_short(argo_crds, namespace, admin, rate)
    finally:
        _install_argo_crds(argo_crds, "analysis-template")


async def _cut_short(
    argo_crds: RealCluster, namespace: str, admin: KubeClient, rate: tuple[str, dict[str, float]]
) -> None:
    url, _ = rate
    body = web_template(namespace, url, group=ARGO)
    body["spec"]["metrics"][0].update({"count": 3, "interval": "1s", "consecutiveSuccessLimit": 3})
    await admin.create(analysis_templates(ARGO), body)
    stored = await admin.get(analysis_templates(ARGO), "success-rate", namespace)
    assert stored is not None and stored["spec"]["metrics"][0]["consecutiveSuccessLimit"] == 3
    await _update_until_aborted(argo_crds, namespace, admin, "the rollout aborted on the run its CRD cut short")
    [run] = await admin.list(analysis_runs(ARGO), namespace)
    assert run["status"]["phase"] == "Error"
    assert "spec.metrics[0].consecutiveSuccessLimit" in run["status"]["message"]
    assert "consecutiveSuccessLimit" not in run["spec"]["metrics"][0]  # what the server kept


async def test_a_router_argos_rollout_crd_prunes_is_refused_not_a_canary_without_traffic_routing(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """This Rollout CRD has no ``trafficRouting.plugins``: the Gateway API plugin a manifest names is pruned at
    apply, leaving an empty trafficRouting. Headway refuses it (InvalidSpec, naming the field) instead of waiting
    forever for a weight no router reads back, or canarying by pod count when traffic splitting was asked for."""
    plugin = {"argoproj-labs/gatewayAPI": {"httpRoute": "web", "namespace": namespace}}
    strategy = {
        "canary": {
            "canaryService": "web-canary",
            "stableService": "web-stable",
            "trafficRouting": {"plugins": plugin},
            "steps": [{"setWeight": 20}, {"pause": {}}],
        }
    }
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO, strategy=strategy))
    stored = await admin.get(rollouts(ARGO), "web", namespace)
    assert stored is not None and stored["spec"]["strategy"]["canary"]["trafficRouting"] == {}
    async with running(argo_crds, namespace, api_group=ARGO):

        async def refused() -> bool:
            events = await admin.list(EVENTS, namespace)
            return any(
                e.get("reason") == "InvalidSpec" and "spec.strategy.canary.trafficRouting" in e.get("message", "")
                for e in events
            )

        await eventually(refused, what="an InvalidSpec Event naming trafficRouting")
    assert (await status(admin, namespace, group=ARGO)).get("phase") == "Degraded"
    assert await admin.list(REPLICA_SETS, namespace) == []  # no pods for a rollout it cannot drive


async def test_a_provider_argos_template_crd_prunes_makes_the_run_an_error_that_says_so(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """This AnalysisTemplate CRD has no ``skywalking`` provider: the API server stores the metric with an empty
    provider. The step's run is Error saying the CRD may have dropped it (not only "set exactly one of ..."),
    and the rollout aborts."""
    body = web_template(namespace, "http://127.0.0.1:1/unused", group=ARGO)
    body["spec"]["metrics"][0]["provider"] = {"skywalking": {"address": "http://127.0.0.1:1", "query": "q"}}
    await admin.create(analysis_templates(ARGO), body)
    stored = await admin.get(analysis_templates(ARGO), "success-rate", namespace)
    assert stored is not None and stored["spec"]["metrics"][0]["provider"] == {}
    await _update_until_aborted(
        argo_crds, namespace, admin, "the rollout aborted on the run its template could not make"
    )
    [run] = await admin.list(analysis_runs(ARGO), namespace)
    assert run["status"]["phase"] == "Error"
    assert "the cluster's CRD dropped it" in run["status"]["message"], run["status"]["message"]


async def test_a_restart_asked_through_headway_passes_argos_date_time_schema_and_replaces_the_pods(
    argo_crds: RealCluster, namespace: str, admin: KubeClient
) -> None:
    """Argo's schema checks ``spec.restartAt`` as a ``date-time``: what ``headway restart`` writes must pass it,
    and the restart happen."""
    await admin.create(rollouts(ARGO), rollout_body(namespace, group=ARGO))
    async with running(argo_crds, namespace, api_group=ARGO):
        await eventually(lambda: healthy_on(admin, namespace, "example/web:1", group=ARGO), what="healthy")
        before = {pod["metadata"]["uid"] for pod in await admin.list(PODS, namespace)}
        await Cluster(admin, namespace, group=ARGO).restart("web", datetime.now(UTC) + timedelta(seconds=1))

        async def restarted() -> bool:
            now = {pod["metadata"]["uid"] for pod in await admin.list(PODS, namespace)}
            done = (await status(admin, namespace, group=ARGO)).get("restartedAt")
            return len(now) == 2 and not now & before and done is not None

        await eventually(restarted, timeout=60, what="both pods replaced and restartedAt written")
