"""A real Kubernetes v1.24 control plane for the controller's stories (kube-apiserver with RBAC and an audit log,
controller-manager, scheduler, and kwok so pods become Ready without a kubelet).

One control plane per test session (about 8 s to start), one namespace per test. Headway is installed as a user
installs it (``kubectl apply -k deploy/base``: CRDs, RBAC, the controller Deployment) with the admin kubeconfig;
the controller under test then runs with a token of the ``headway-controller`` ServiceAccount, so it has exactly
the permissions ``deploy/base`` grants and a missing one fails a test. The control plane is found beside the
repository (``<repo>/../shared/kube``, as CI lays it out); where it or ``etcd`` is absent the tests skip and say so.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from headway.runtimes.kubernetes.client import KubeClient
from tests.e2e.realkube.cluster import HTTP_ROUTE_CRD, RealCluster

REPO = Path(__file__).resolve().parents[3]


def _testbed() -> Path:
    """``shared/kube`` beside the repository (CI clones the repository next to a copy of ``shared/``); a git
    worktree one level further down finds it in the next directory up."""
    for ancestor in REPO.parents:
        if (ancestor / "shared" / "kube" / "up").is_file():
            return ancestor / "shared" / "kube"
    return REPO.parent / "shared" / "kube"


KUBE = _testbed()
PORTS = 6
"""`up` uses six consecutive ports from its base."""


def _missing() -> str | None:
    if not (KUBE / "up").is_file():
        return f"no Kubernetes control plane for tests at {KUBE} (a clone without shared/)"
    for tool, package in (("etcd", "etcd-server"), ("kubectl", "kubectl"), ("openssl", "openssl"), ("curl", "curl")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: {package}); the real-server tests need it"
    return None


def _free(base: int) -> bool:
    for port in range(base, base + PORTS):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _port_base() -> int:
    """A base whose six ports are free now, away from `up`'s default (16400) and from other sessions' choices."""
    start = 20000 + (os.getpid() * 7) % 20000
    for base in itertools.chain(range(start, 45000, 10), range(20000, start, 10)):
        if _free(base):
            return base
    raise RuntimeError("no six free ports for the control plane")


def _kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the same server and CA as ``admin``, authenticating with a ServiceAccount ``token``."""
    config = yaml.safe_load(admin.read_text())
    cluster = config["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": cluster}],
                "users": [{"name": "headway-controller", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "headway-controller"}}],
                "current-context": "test",
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """The control plane, with Headway installed from ``deploy/base``; stopped at the end of the session."""
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("kube")
    env = {**os.environ, "KUBE_PORT_BASE": str(_port_base())}
    try:
        started = subprocess.run(
            [str(KUBE / "up"), str(state)], capture_output=True, text=True, timeout=180, env=env
        )
        if started.returncode != 0:
            raise RuntimeError(f"the control plane did not start: {started.stderr.strip()[-2000:]}")
        admin = state / "kubeconfig"
        _kubectl(admin, "apply", "-k", str(REPO / "deploy" / "base"))
        crd = state / "httproute-crd.yaml"
        crd.write_text(yaml.safe_dump(HTTP_ROUTE_CRD))
        _kubectl(admin, "apply", "-f", str(crd))
        _kubectl(admin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        token = _kubectl(
            admin, "create", "token", "headway-controller", "-n", "headway-system", "--duration=6h"
        ).strip()
        controller = _token_kubeconfig(admin, token, state / "controller.kubeconfig")
        yield RealCluster(state=state, admin=admin, controller=controller)
    finally:
        subprocess.run([str(KUBE / "down"), str(state)], capture_output=True, timeout=120)


_numbers = itertools.count(1)


@pytest.fixture
def namespace(real_cluster: RealCluster) -> Iterator[str]:
    """A namespace of its own for one test; deleted (in the background) afterwards."""
    name = f"t{next(_numbers)}-{os.getpid() % 10000}"
    _kubectl(real_cluster.admin, "create", "namespace", name)
    try:
        yield name
    finally:
        _kubectl(real_cluster.admin, "delete", "namespace", name, "--wait=false", check=False)


@pytest_asyncio.fixture
async def admin(real_cluster: RealCluster) -> AsyncIterator[KubeClient]:
    """A client with the admin kubeconfig (``system:masters``): the user's and kubectl's side of a story."""
    client = KubeClient.from_kubeconfig(real_cluster.admin, field_manager="test-user")
    try:
        yield client
    finally:
        await client.close()
