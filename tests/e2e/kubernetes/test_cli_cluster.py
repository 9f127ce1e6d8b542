"""The rollout commands against a cluster: the fidelity emulator over real HTTP, reached through a kubeconfig.

No controller runs here: each test checks that the CLI's patch lands on the Rollout (spec or /status) exactly as
``kubectl argo rollouts`` would write it, and that the views and errors read right.
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
from click.testing import CliRunner, Result

from headway.cli import kube
from headway.cli.main import main
from headway.dashboard.model import RolloutView
from headway.kube.client import REPLICA_SETS, KubeClient, analysis_runs, experiments, rollouts
from headway.platforms.kubernetes import PODS
from headway.runtimes.kubernetes.operate import Cluster, Target
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, rollout_body

NS = "default"
HASHES = {1: "aaa111", 2: "bbb222"}


def write_kubeconfig(url: str, path: Path) -> Path:
    """A kubeconfig whose current context ``kmock`` points at ``url`` (namespace default, no credentials)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": NS}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> Path:
    return write_kubeconfig(api.url, tmp_path / "kubeconfig")


def _replica_set(owner: dict[str, Any], number: int, image: str) -> dict[str, Any]:
    pod_hash = HASHES[number]
    labels = {"app": "web", "rollouts-pod-template-hash": pod_hash}
    return {
        "metadata": {
            "name": f"web-{pod_hash}",
            "namespace": NS,
            "labels": labels,
            "annotations": {"rollout.argoproj.io/revision": str(number)},
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Rollout", "name": "web", "uid": owner["metadata"]["uid"]}
            ],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }


def _pod(owner: dict[str, Any], suffix: str, phase: str, *, ready: bool, restarts: int) -> dict[str, Any]:
    """A pod of the ReplicaSet ``owner``, as the ReplicaSet controller and the kubelet report it."""
    meta = owner["metadata"]
    reference = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": meta["name"], "uid": meta["uid"]}
    return {
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "namespace": NS,
            "labels": meta["labels"],
            "ownerReferences": [reference],
        },
        "spec": owner["spec"]["template"]["spec"],
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "web", "ready": ready, "restartCount": restarts}],
        },
    }


RUN_STATUS = {
    "phase": "Running",
    "startedAt": "2026-01-01T00:00:00Z",
    "metricResults": [
        {
            "name": "success-rate",
            "phase": "Running",
            "count": 3,
            "successful": 2,
            "failed": 1,
            "measurements": [
                {
                    "phase": "Successful",
                    "value": "0.991",
                    "startedAt": "2026-01-01T00:01:00Z",
                    "finishedAt": "2026-01-01T00:01:00Z",
                },
                {
                    "phase": "Successful",
                    "value": "[0.985]",
                    "startedAt": "2026-01-01T00:02:00Z",
                    "finishedAt": "2026-01-01T00:02:00Z",
                },
                {
                    "phase": "Failed",
                    "value": "0.62",
                    "message": "result[0] >= 0.95 is false",
                    "startedAt": "2026-01-01T00:03:00Z",
                    "finishedAt": "2026-01-01T00:03:00Z",
                },
            ],
        },
        {
            "name": "judge",
            "phase": "Running",
            "count": 2,
            "successful": 2,
            "metadata": {
                "pValue": "0.31",
                "ratio": "1.2",
                "lower": "0.7",
                "upper": "2.4",
                "explanation": "Hold: not enough evidence either way",
            },
            "measurements": [
                {
                    "phase": "Successful",
                    "startedAt": "2026-01-01T00:01:00Z",
                    "finishedAt": "2026-01-01T00:01:00Z",
                    "value": '{"canaryRequests": 400, "canaryBad": 2, "stableRequests": 1600, "stableBad": 6}',
                    "metadata": {"ratio": "1.3", "lower": "0.5"},
                },
                {
                    "phase": "Successful",
                    "startedAt": "2026-01-01T00:02:00Z",
                    "finishedAt": "2026-01-01T00:02:00Z",
                    "value": '{"canaryRequests": 500, "canaryBad": 2, "stableRequests": 2000, "stableBad": 7}',
                    "metadata": {"ratio": "1.2", "lower": "0.7", "upper": "2.4"},
                },
            ],
        },
    ],
}
"""An AnalysisRun's status as the controller's executor writes it: a threshold metric and a judge metric."""

RUN_SPEC = {
    "revision": HASHES[2],
    "metrics": [
        {"name": "success-rate", "successCondition": "result[0] >= 0.95", "provider": {"prometheus": {"query": "x"}}},
        {"name": "judge", "provider": {"plugin": {"headway.dev/judge": {"source": "proxy", "toleratedRatio": 1.5}}}},
    ],
}


def seed_paused_canary(api: ApiServer) -> dict[str, Any]:
    """Rollout web updating from example/web:1 (revision 1) to :2 (revision 2), paused at step 1 with 20% canary,
    and its step's AnalysisRun (two metrics measured, one failed measurement, the judge's evidence)."""
    body = api.kube.create(rollouts(GROUP), rollout_body(image="example/web:2"))
    owners = {
        number: api.kube.create(REPLICA_SETS, _replica_set(body, number, image))
        for number, image in ((1, "example/web:1"), (2, "example/web:2"))
    }
    for number, suffix, phase, ready, restarts in (
        (1, "q1", "Running", True, 2),
        (2, "p1", "Running", True, 0),
        (2, "p2", "Pending", False, 0),
    ):
        api.kube.create(PODS, _pod(owners[number], suffix, phase, ready=ready, restarts=restarts))
    status = {
        "phase": "Paused",
        "message": "CanaryPauseStep",
        "stableRS": HASHES[1],
        "currentPodHash": HASHES[2],
        "currentStepIndex": 1,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
        "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}},
    }
    api.kube.patch(rollouts(GROUP), "web", NS, {"status": status}, status=True)
    run: dict[str, Any] = {
        "metadata": {
            "name": f"web-{HASHES[2]}-1",
            "namespace": NS,
            "labels": {"headway.dev/rollout": "web", "headway.dev/run-kind": "step"},
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Rollout", "name": "web", "uid": body["metadata"]["uid"]}
            ],
        },
        "spec": RUN_SPEC,
    }
    api.kube.create(analysis_runs(GROUP), run)
    api.kube.patch(analysis_runs(GROUP), f"web-{HASHES[2]}-1", NS, {"status": RUN_STATUS}, status=True)
    return body


@pytest.fixture
def paused_canary(api: ApiServer) -> dict[str, Any]:
    return seed_paused_canary(api)


def _cli(kubeconfig: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--kubeconfig", str(kubeconfig)], catch_exceptions=False)


def _rollout(api: ApiServer) -> dict[str, Any]:
    body = api.kube.get(rollouts(GROUP), "web", NS)
    assert body is not None
    return body


@pytest.mark.usefixtures("paused_canary")
def test_get_rollout_json_and_text_show_revisions_runs_and_weights(api: ApiServer, kubeconfig: Path) -> None:
    result = _cli(kubeconfig, "get", "rollout", "web", "-o", "json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    assert (view["phase"], view["canaryWeight"], view["step"], view["paused"]) == ("Paused", 20, 1, True)
    assert view["currentImage"] == "example/web:2" and view["stableImage"] == "example/web:1"
    roles = {r["number"]: (r["role"], r["image"]) for r in view["revisions"]}
    assert roles == {2: ("canary", "example/web:2"), 1: ("stable", "example/web:1")}
    assert [run["name"] for run in view["analysisRuns"]] == [f"web-{HASHES[2]}-1"]

    text = _cli(kubeconfig, "get", "rollout", "web")
    assert text.exit_code == 0, text.output
    assert "web" in text.output and "Paused" in text.output and "example/web:2" in text.output

    as_yaml = yaml.safe_load(_cli(kubeconfig, "get", "rollout", "web", "-o", "yaml").output)
    assert as_yaml["name"] == "web"


TREE = """\
⟳ web  Rollout  ॥ Paused
├── # revision:2
│   ├── ⧉ web-bbb222  ReplicaSet  ◌ Progressing  canary  0/2 ready  example/web:2
│   │   ├── □ web-bbb222-p1  Pod  ✔ Running  ready:1/1
│   │   └── □ web-bbb222-p2  Pod  ◌ Pending  ready:0/1
│   └── α web-bbb222-1  AnalysisRun  ◌ Running  ✔ 4 ✖ 1
│       ├── success-rate: 0.991 ✔ 0.985 ✔ 0.62 ✖  result[0] >= 0.95 is false
│       ├── judge: 1.3 ✔ 1.2 ✔
│       └── judge: ratio 1.2 [0.7, 2.4], tolerated 1.5, p=0.31
│           Hold: not enough evidence either way
└── # revision:1
    └── ⧉ web-aaa111  ReplicaSet  ◌ Progressing  stable  0/2 ready  example/web:1
        └── □ web-aaa111-q1  Pod  ✔ Running  ready:1/1  restarts:2
"""  # noqa: RUF001 (the tree's run marker is a Greek alpha, as in Argo's plugin)


@pytest.mark.usefixtures("paused_canary")
def test_views_show_the_analysis_run_measurements_verdicts_and_judge_evidence(api: ApiServer, kubeconfig: Path) -> None:
    """The AnalysisRun's ``status.metricResults[].measurements`` under its revision, images tagged by role."""
    text = _cli(kubeconfig, "get", "rollout", "web")
    assert text.exit_code == 0, text.output
    lines = [line.rstrip() for line in text.output.splitlines()]
    assert "\n".join(lines[lines.index("⟳ web  Rollout  ॥ Paused") :]) + "\n" == TREE
    assert lines[lines.index("Images:          example/web:2 (canary)") + 1].strip() == "example/web:1 (stable)"

    view = json.loads(_cli(kubeconfig, "get", "rollout", "web", "-o", "json").output)
    pods = {
        r["number"]: [(p["name"], p["phase"], p["ready"], p["restarts"]) for p in r["pods"]] for r in view["revisions"]
    }
    assert pods == {
        2: [("web-bbb222-p1", "Running", "1/1", 0), ("web-bbb222-p2", "Pending", "0/1", 0)],
        1: [("web-aaa111-q1", "Running", "1/1", 2)],
    }
    run = view["analysisRuns"][0]
    assert (run["kind"], run["revision"], run["phase"]) == ("step", HASHES[2], "Running")
    success = [(m["value"], m["phase"]) for m in run["measurements"] if m["metric"] == "success-rate"]
    assert success == [(0.991, "Successful"), (0.985, "Successful"), (0.62, "Failed")]
    judge = run["judge"]
    assert (judge["ratio"], judge["lower"], judge["upper"], judge["pValue"]) == (1.2, 0.7, 2.4, 0.31)
    assert (judge["toleratedRatio"], judge["canaryRequests"], judge["stableRequests"]) == (1.5, 900, 3600)
    assert [(p["ratio"], p["lower"], p["upper"]) for p in judge["history"]] == [(1.3, 0.5, None), (1.2, 0.7, 2.4)]

    broken = {"metricResults": [{"name": "x", "phase": "Running", "measurements": [{"phase": "Sideways"}]}]}
    api.kube.patch(analysis_runs(GROUP), f"web-{HASHES[2]}-1", NS, {"status": broken}, status=True)
    odd = _cli(kubeconfig, "get", "rollout", "web")
    assert odd.exit_code == 0, odd.output  # one odd run never breaks the view; its problem is shown instead
    assert "status.metricResults.0.measurements.0.phase: Input should be" in odd.output


@pytest.mark.usefixtures("paused_canary")
def test_list_rollouts_in_namespace_and_all(api: ApiServer, kubeconfig: Path) -> None:
    other = rollout_body("api")
    other["metadata"]["namespace"] = "shop"
    api.kube.create(rollouts(GROUP), other)
    here = json.loads(_cli(kubeconfig, "list", "rollouts", "-o", "json").output)
    assert [v["name"] for v in here] == ["web"]
    everywhere = json.loads(_cli(kubeconfig, "list", "rollouts", "-A", "-o", "json").output)
    assert sorted(v["key"] if "key" in v else f"{v['namespace']}/{v['name']}" for v in everywhere) == [
        "default/web",
        "shop/api",
    ]
    shop = _cli(kubeconfig, "list", "rollouts", "-n", "shop")
    assert shop.exit_code == 0, shop.output
    assert [line.split()[0] for line in shop.output.splitlines()[1:]] == ["api"]


@pytest.mark.usefixtures("paused_canary")
def test_promote_clears_pause_conditions_and_full_sets_promote_full(api: ApiServer, kubeconfig: Path) -> None:
    before = _rollout(api)["metadata"]["resourceVersion"]
    result = _cli(kubeconfig, "promote", "web")
    assert result.exit_code == 0, result.output
    assert "promote requested" in result.output
    after = _rollout(api)
    assert after["status"].get("pauseConditions", []) == []
    assert after["status"]["currentStepIndex"] == 1  # a pause is resumed, not skipped
    assert after["metadata"]["resourceVersion"] != before

    assert _cli(kubeconfig, "promote", "web", "--full").exit_code == 0
    assert _rollout(api)["status"]["promoteFull"] is True


@pytest.mark.usefixtures("paused_canary")
def test_abort_then_retry_write_status(api: ApiServer, kubeconfig: Path) -> None:
    assert _cli(kubeconfig, "abort", "web").exit_code == 0
    assert _rollout(api)["status"]["abort"] is True
    refused = _cli(kubeconfig, "promote", "web")
    assert refused.exit_code == 1 and "aborted: use retry" in refused.output
    assert _cli(kubeconfig, "retry", "web").exit_code == 0
    status = _rollout(api)["status"]
    assert status["abort"] is False and status["currentStepIndex"] == 0


@pytest.mark.usefixtures("paused_canary")
def test_pause_resume_restart_write_spec(api: ApiServer, kubeconfig: Path) -> None:
    assert _cli(kubeconfig, "pause", "web").exit_code == 0
    assert _rollout(api)["spec"]["paused"] is True
    assert _cli(kubeconfig, "resume", "web").exit_code == 0
    assert _rollout(api)["spec"].get("paused") in (False, None)
    assert _cli(kubeconfig, "restart", "web").exit_code == 0
    assert _rollout(api)["spec"]["restartAt"]
    assert _rollout(api)["status"]["pauseConditions"]  # spec controls leave the status alone


@pytest.mark.usefixtures("paused_canary")
def test_undo_writes_the_old_template_and_set_image_patches_the_container(api: ApiServer, kubeconfig: Path) -> None:
    result = _cli(kubeconfig, "undo", "web")
    assert result.exit_code == 0, result.output
    template = _rollout(api)["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "example/web:1"
    assert "rollouts-pod-template-hash" not in template["metadata"]["labels"]

    assert _cli(kubeconfig, "undo", "web", "--to-revision", "2").exit_code == 0
    assert _rollout(api)["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2"
    missing = _cli(kubeconfig, "undo", "web", "--to-revision", "7")
    assert missing.exit_code == 1 and "no revision 7 (revisions: 2, 1)" in missing.output

    assert _cli(kubeconfig, "set", "image", "web", "web=example/web:3").exit_code == 0
    assert _rollout(api)["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:3"
    wrong = _cli(kubeconfig, "set", "image", "web", "sidecar=x:1")
    assert wrong.exit_code == 1 and "no container sidecar (containers: web)" in wrong.output


@pytest.mark.usefixtures("paused_canary")
def test_status_returns_when_settled_and_times_out_otherwise(api: ApiServer, kubeconfig: Path) -> None:
    settled = _cli(kubeconfig, "status", "web", "--timeout", "5")
    assert settled.exit_code == 0 and "Paused" in settled.output
    api.kube.patch(rollouts(GROUP), "web", NS, {"status": {"phase": "Progressing"}}, status=True)
    waiting = _cli(kubeconfig, "status", "web", "--timeout", "0.5")
    assert waiting.exit_code == 1 and "still Progressing after the timeout" in waiting.output


@pytest.mark.usefixtures("paused_canary")
def test_status_does_not_pass_a_spec_the_controller_has_not_observed(api: ApiServer, kubeconfig: Path) -> None:
    generation = _rollout(api)["metadata"]["generation"]
    api.kube.patch(
        rollouts(GROUP), "web", NS, {"status": {"phase": "Healthy", "observedGeneration": str(generation)}}, status=True
    )
    assert _cli(kubeconfig, "status", "web", "--timeout", "5").exit_code == 0
    api.kube.patch(rollouts(GROUP), "web", NS, {"spec": {"replicas": 7}})  # a new spec: generation + 1
    stale = _cli(kubeconfig, "status", "web", "--timeout", "0.5")
    assert stale.exit_code == 1 and "still Progressing after the timeout" in stale.output
    assert f"waiting for the controller to observe generation {generation + 1}" in stale.output


def test_errors_say_what_to_do(api: ApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    missing = _cli(kubeconfig, "promote", "nope")
    assert missing.exit_code == 1
    assert "no rollout named nope in namespace default (known: none)" in missing.output
    wrong_context = _cli(kubeconfig, "abort", "web", "--context", "prod")
    assert wrong_context.exit_code == 1 and "--context" in wrong_context.output
    dead = tmp_path / "dead"
    dead.write_text(kubeconfig.read_text().replace(api.url, "http://127.0.0.1:9"))
    unreachable = _cli(dead, "get", "rollout", "web")
    assert unreachable.exit_code == 1
    assert "cannot reach the cluster at http://127.0.0.1:9: check --context" in unreachable.output


def test_mode_switch(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path) -> None:
    monkeypatch.delenv("HEADWAY_MODE", raising=False)
    monkeypatch.setattr("sys.argv", ["headway"])
    assert kube.target_of(None, None, None) is None
    assert kube.target_of(None, "shop", None) == Target(namespace="shop")
    monkeypatch.setattr("sys.argv", ["/usr/bin/kubectl-headway"])
    assert kube.target_of(None, None, None) == Target()
    monkeypatch.setenv("HEADWAY_MODE", "embedded")
    assert kube.target_of(None, None, None) is None
    monkeypatch.setattr("sys.argv", ["headway"])
    monkeypatch.setenv("HEADWAY_MODE", "kubernetes")
    assert kube.target_of(None, None, kubeconfig) == Target(kubeconfig=kubeconfig)


@pytest.mark.usefixtures("paused_canary")
def test_the_kubectl_plugin_binary_targets_the_cluster_by_default(kubeconfig: Path, tmp_path: Path) -> None:
    plugin = Path(sys.executable).parent / "kubectl-headway"
    assert plugin.exists(), f"{plugin} is not installed: pip install -e . installs it"
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "HEADWAY_STATE_DIR": str(tmp_path / "none")}
    environment.pop("HEADWAY_MODE", None)
    done = subprocess.run(
        [str(plugin), "get", "rollout", "web", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["currentImage"] == "example/web:2"


@pytest.mark.usefixtures("paused_canary")
def test_a_control_written_after_a_controller_pass_is_recomputed_not_overwritten(
    api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read goes stale (the "controller" writes status in between): 409, re-read, and both changes stay."""
    original = Cluster.rollout
    interfered: list[bool] = []

    async def stale_once(self: Cluster, name: str) -> dict[str, Any]:
        body = await original(self, name)
        if not interfered:
            interfered.append(True)
            await self.client.patch(rollouts(GROUP), name, NS, {"status": {"message": "controller wrote"}}, status=True)
        return body

    monkeypatch.setattr(Cluster, "rollout", stale_once)
    client = KubeClient.for_server(api.url)
    view = asyncio.run(_abort(Cluster(client, NS, group=GROUP)))
    assert view.aborted and interfered
    assert client.requests["write"] == 3  # the interfering write, the refused (409) one, the recomputed one
    status = _rollout(api)["status"]
    assert status["abort"] is True and status["message"] == "controller wrote"


async def _abort(cluster: Cluster) -> RolloutView:
    try:
        return await cluster.abort("web")
    finally:
        await cluster.client.close()


def test_views_show_the_experiments_of_a_rollout_with_experiment_steps(api: ApiServer, kubeconfig: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"experiment": {"templates": [{"name": "baseline", "specRef": "stable"}]}},
    ]
    body = api.kube.create(rollouts(GROUP), rollout_body("exp", image="example/exp:2", steps=steps))
    name = f"exp-{HASHES[2]}-2-1"
    experiment: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"headway.dev/rollout": "exp", "rollouts-pod-template-hash": HASHES[2]},
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Rollout", "name": "exp", "uid": body["metadata"]["uid"]}
            ],
        },
        "spec": {"templates": [{"name": "baseline", "replicas": 1}]},
    }
    api.kube.create(experiments(GROUP), experiment)
    api.kube.patch(
        experiments(GROUP), experiment["metadata"]["name"], NS, {"status": {"phase": "Running"}}, status=True
    )
    view = json.loads(_cli(kubeconfig, "get", "rollout", "exp", "-o", "json").output)
    assert [(e["name"], e["phase"], e["revision"]) for e in view["experiments"]] == [
        (f"exp-{HASHES[2]}-2-1", "Running", HASHES[2])
    ]
    assert view["analysisRuns"] == []
    text = _cli(kubeconfig, "get", "rollout", "exp")
    assert f"exp-{HASHES[2]}-2-1  Experiment  ◌ Running" in text.output
