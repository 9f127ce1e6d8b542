"""A real Kubernetes v1.24 control plane for the controller's stories (kube-apiserver with RBAC and an audit log,
controller-manager, scheduler, and kwok so pods become Ready without a kubelet).

One control plane per test session (about 8 s to start), one namespace per test. Headway is installed as a user
installs it (``kubectl apply -k deploy/base``: CRDs, RBAC, the controller Deployment) with the admin kubeconfig;
the controller under test then runs with a token of the ``headway-controller`` ServiceAccount, so it has exactly
the permissions ``deploy/base`` grants and a missing one fails a test. The control plane is found beside the
repository (see `tests.e2e.realkube.cluster`); where it or ``etcd`` is absent the tests skip and say so.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiohttp import web

from headway.kube.client import KubeClient
from tests.e2e.realkube.cluster import RealCluster, control_plane, kubectl, missing


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """The control plane, with Headway installed from ``deploy/base``; stopped at the end of the session."""
    reason = missing()
    if reason is not None:
        if os.environ.get("CI"):  # CI has shared/kube beside the clone: a skip there would hide the whole suite
            pytest.fail(f"the real Kubernetes tests cannot run in CI: {reason}")
        pytest.skip(reason)
    with control_plane(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


_numbers = itertools.count(1)


@pytest.fixture
def namespace(real_cluster: RealCluster) -> Iterator[str]:
    """A namespace of its own for one test; deleted (in the background) afterwards."""
    name = f"t{next(_numbers)}-{os.getpid() % 10000}"
    kubectl(real_cluster.admin, "create", "namespace", name)
    try:
        yield name
    finally:
        kubectl(real_cluster.admin, "delete", "namespace", name, "--wait=false", check=False)


@pytest_asyncio.fixture
async def admin(real_cluster: RealCluster) -> AsyncIterator[KubeClient]:
    """A client with the admin kubeconfig (``system:masters``): the user's and kubectl's side of a story."""
    client = KubeClient.from_kubeconfig(real_cluster.admin, field_manager="test-user")
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def rate() -> AsyncIterator[tuple[str, dict[str, float]]]:
    """A metrics endpoint on 127.0.0.1 answering ``{"rate": answer["rate"]}`` (the test may change it)."""
    answer = {"rate": 1.0}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/rate", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/rate", answer
    finally:
        await runner.cleanup()
