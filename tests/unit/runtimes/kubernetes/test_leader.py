"""Lease-based leader election against the emulator: one holder at a time, takeover on expiry or release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from headway.kube.client import LEASES, KubeClient
from headway.runtimes.kubernetes.leader import LeaderElector
from tests.e2e.kubernetes.emulator import ApiServer

pytestmark = pytest.mark.asyncio


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest_asyncio.fixture
async def client(api: ApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient.for_server(api.url)
    yield client
    await client.close()


def elector(client: KubeClient, identity: str, lease_seconds: float = 15.0) -> LeaderElector:
    return LeaderElector(client, name="lease", namespace="default", identity=identity, lease_seconds=lease_seconds)


async def test_only_one_of_two_candidates_holds_the_lease(client: KubeClient) -> None:
    first, second = elector(client, "a"), elector(client, "b")

    assert await first.try_acquire() is True
    assert await second.try_acquire() is False
    assert await first.try_acquire() is True  # renewing

    lease = await client.get(LEASES, "lease", "default")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"


async def test_an_expired_lease_is_taken_over_and_counted(client: KubeClient) -> None:
    first, second = elector(client, "a"), elector(client, "b")
    await first.try_acquire()
    stale = (datetime.now(UTC) - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await client.patch(LEASES, "lease", "default", {"spec": {"renewTime": stale}})

    assert await second.try_acquire() is True

    lease = await client.get(LEASES, "lease", "default")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("b", 1)


async def test_a_released_lease_is_free_at_once(client: KubeClient) -> None:
    first, second = elector(client, "a"), elector(client, "b")
    await first.try_acquire()

    await first.release()

    assert await second.try_acquire() is True


async def test_two_running_electors_never_lead_together(client: KubeClient) -> None:
    first, second = elector(client, "a", lease_seconds=1.0), elector(client, "b", lease_seconds=1.0)
    first.renew_seconds = second.renew_seconds = 0.1
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        overlaps = 0
        for _ in range(30):
            await asyncio.sleep(0.05)
            overlaps += first.leading.is_set() and second.leading.is_set()
        assert first.leading.is_set() != second.leading.is_set()
        assert overlaps == 0
        leader, follower = (first, second) if first.leading.is_set() else (second, first)

        tasks[[first, second].index(leader)].cancel()  # graceful stop releases the lease
        await asyncio.sleep(0.5)
        assert follower.leading.is_set()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
