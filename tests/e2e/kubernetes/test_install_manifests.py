"""The install manifests and the examples go through real ``kubectl apply --dry-run=client``.

kubectl maps every document to a resource through the API server's discovery, so each one must name an
apiVersion/kind the server serves (the emulator serves the built-in groups and our CRDs' group, as a cluster
does once the CRDs are installed) and be well-formed YAML with the fields kubectl needs. Schema validation is
left to the CRD tests (tests/unit/runtimes/kubernetes/test_crds.py), since the emulator serves no OpenAPI
document for kubectl to download (``--validate=false``). Helm is not packaged for Debian; the chart is rendered
only where ``helm`` is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import serve

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
EXAMPLES = [*sorted((ROOT / "examples").glob("*.yaml")), ROOT / "examples" / "embedded" / "rollout.yaml"]
ARGO_EXAMPLES = sorted((ROOT / "tests" / "data" / "argo").glob("*.yaml"))


THIRD_PARTY = [
    ("networking.istio.io", "v1alpha3", "virtualservices", "VirtualService"),
    ("networking.istio.io", "v1alpha3", "destinationrules", "DestinationRule"),
    ("networking.istio.io", "v1alpha3", "gateways", "Gateway"),
    ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    ("gateway.networking.k8s.io", "v1", "gateways", "Gateway"),
    ("split.smi-spec.io", "v1alpha3", "trafficsplits", "TrafficSplit"),
]


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI") and binary == "kubectl":
            pytest.fail(f"{binary} is required in CI")
        pytest.skip(f"{binary} is not installed")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    api = serve()
    for plural, kind in (("rollouts", "Rollout"), ("analysisruns", "AnalysisRun"), ("experiments", "Experiment")):
        api.emulator.declare("argoproj.io", "v1alpha1", plural, kind)  # the drop-in mode's group
    api.emulator.declare("argoproj.io", "v1alpha1", "analysistemplates", "AnalysisTemplate")
    api.emulator.declare(
        "argoproj.io", "v1alpha1", "clusteranalysistemplates", "ClusterAnalysisTemplate", namespaced=False
    )
    for group, version, plural, kind in THIRD_PARTY:  # the routers' CRDs, as on a cluster that has them
        api.emulator.declare(group, version, plural, kind)
    try:
        yield api
    finally:
        api.__exit__(None, None, None)


def _dry_run(server: ApiServer, manifest: str) -> list[str]:
    kubectl = _need("kubectl")
    done = subprocess.run(
        [kubectl, f"--server={server.url}", "apply", "--dry-run=client", "--validate=false", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": "/dev/null"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_kustomize_base_applies(server: ApiServer) -> None:
    rendered = subprocess.run(
        [_need("kubectl"), "kustomize", str(DEPLOY / "base")], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    lines = _dry_run(server, rendered)
    assert len(lines) == len(documents)
    assert all(line.endswith("(dry run)") for line in lines), lines
    assert "deployment.apps/headway-controller created (dry run)" in lines
    assert "customresourcedefinition.apiextensions.k8s.io/rollouts.headway.dev created (dry run)" in lines


@pytest.mark.parametrize("path", EXAMPLES + ARGO_EXAMPLES, ids=lambda p: p.name)
def test_every_example_applies(server: ApiServer, path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    lines = _dry_run(server, path.read_text())
    assert len(lines) == len(documents), lines


def test_the_helm_chart_renders_what_kustomize_installs() -> None:
    helm = _need("helm")
    rendered = subprocess.run(
        [helm, "template", "headway", str(DEPLOY / "helm" / "headway"), "--include-crds"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds.count("CustomResourceDefinition") == 5
    assert {"ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"} <= set(kinds)
