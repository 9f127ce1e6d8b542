"""``kubectl apply -k deploy/base`` on a real API server (the session fixture applies it): every object is there,
the CRDs are established with their subresources, and the ServiceAccount has what the controller needs and no more."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.realkube.cluster import RealCluster

pytestmark = pytest.mark.slow
SA = "system:serviceaccount:headway-system:headway-controller"


def _kubectl(cluster: RealCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.admin), *args], check=False, capture_output=True, text=True, timeout=60
    )


def _can(cluster: RealCluster, *args: str) -> bool:
    return _kubectl(cluster, "auth", "can-i", "--as", SA, *args).stdout.strip() == "yes"


def test_the_base_installs_every_object(real_cluster: RealCluster) -> None:
    for kind, name in (
        ("crd", "rollouts.headway.dev"),
        ("crd", "analysisruns.headway.dev"),
        ("crd", "analysistemplates.headway.dev"),
        ("crd", "clusteranalysistemplates.headway.dev"),
        ("crd", "experiments.headway.dev"),
        ("clusterrole", "headway-controller"),
        ("clusterrolebinding", "headway-controller"),
        ("-n headway-system serviceaccount", "headway-controller"),
        ("-n headway-system role", "headway-leader-election"),
        ("-n headway-system deployment", "headway-controller"),
        ("-n headway-system service", "headway-controller-metrics"),
    ):
        found = _kubectl(real_cluster, "get", *kind.split(), name, "-o", "name")
        assert found.returncode == 0, f"{kind} {name}: {found.stderr}"


def test_the_service_account_may_do_what_the_controller_does_and_no_more(real_cluster: RealCluster) -> None:
    for allowed in (
        ("patch", "rollouts.headway.dev", "--subresource=status", "-n", "any"),
        ("create", "replicasets.apps", "-n", "any"),
        ("create", "analysisruns.headway.dev", "-n", "any"),
        ("create", "jobs.batch", "-n", "any"),
        ("get", "secrets", "-n", "any"),
        ("patch", "leases.coordination.k8s.io", "-n", "headway-system"),
    ):
        assert _can(real_cluster, *allowed), allowed
    for refused in (
        ("list", "secrets", "-n", "any"),
        ("patch", "leases.coordination.k8s.io", "-n", "default"),
        ("update", "rollouts.headway.dev", "-n", "any"),
        ("create", "pods", "-n", "any"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
    ):
        assert not _can(real_cluster, *refused), refused
