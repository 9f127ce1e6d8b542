"""Fixtures shared by the Kubernetes e2e tests: a fake API server over real HTTP, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from headway.kube.client import KubeClient
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import serve


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = serve()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest_asyncio.fixture
async def client(api: ApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient.for_server(api.url)
    try:
        yield client
    finally:
        await client.close()
