"""Drop-in for Argo Rollouts on a real API server with Argo's own Rollout CRD installed (tests/data/argo-crds).

Argo's CRD serves /scale from ``.status.HPAReplicas`` and prunes every status field its schema does not name;
Headway's own status fields must survive inside that schema, or old revisions are never scaled down and the
progress clock restarts on every pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from headway.kube.client import REPLICA_SETS, KubeClient, rollouts
from headway.runtimes.kubernetes.crds import crds
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
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ARGO = "argoproj.io"
ARGO_CRDS = Path(__file__).resolve().parents[2] / "data" / "argo-crds"


@pytest.fixture
def argo_crds(real_cluster: RealCluster) -> RealCluster:
    """Argo's Rollout CRD; the other argoproj.io kinds from our generator (their schemas are not under test)."""
    others = [crd for crd in crds(ARGO) if crd["spec"]["names"]["kind"] != "Rollout"]
    generated = real_cluster.state / "argo-others.yaml"
    generated.write_text(yaml.safe_dump_all(others))
    kubectl(real_cluster.admin, "apply", "-f", str(ARGO_CRDS / "rollout-crd.yaml"), "-f", str(generated))
    kubectl(real_cluster.admin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
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
