"""The ReplicaSet cache: seeded by a LIST, kept by watch events and write answers, never moved back in time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from headway.bootstrap.kubernetes import build_controller
from headway.core.errors import AdapterError
from headway.kube.client import REPLICA_SETS, BlockingKube, KubeClient
from headway.runtimes.kubernetes import controller as controller_module
from headway.runtimes.kubernetes.cache import CachedKube, ReplicaSetCache
from headway.runtimes.kubernetes.controller import ControllerConfig, _Worker

KEY = ("shop", "web")


def rs(name: str, version: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "resourceVersion": str(version),
            "labels": {"headway.dev/rollout": "web"},
        },
        "spec": {"replicas": replicas},
    }


def sizes(cache: ReplicaSetCache) -> dict[str, int]:
    return {item["metadata"]["name"]: item["spec"]["replicas"] for item in cache.listed(KEY) or []}


def test_nothing_is_served_before_a_list_seeded_the_rollout() -> None:
    cache = ReplicaSetCache()
    cache.observed(rs("web-a", 5))  # an event before the first LIST: the LIST will see it
    assert cache.listed(KEY) is None
    cache.seed(KEY, [rs("web-a", 5)])
    assert sizes(cache) == {"web-a": 1}


def test_newer_events_and_write_answers_are_kept_older_events_are_not() -> None:
    cache = ReplicaSetCache()
    cache.seed(KEY, [rs("web-a", 5)])
    cache.wrote(rs("web-a", 9, replicas=3))  # our scale, as the server answered it
    cache.observed(rs("web-a", 7, replicas=2))  # an event from before our write, arriving late
    assert sizes(cache) == {"web-a": 3}
    cache.observed(rs("web-b", 10))
    assert sizes(cache) == {"web-a": 3, "web-b": 1}


def test_a_deleted_replica_set_stays_gone_until_the_watch_or_a_create_says_otherwise() -> None:
    cache = ReplicaSetCache()
    cache.seed(KEY, [rs("web-a", 5), rs("web-b", 6)])
    cache.removed("shop", "web", "web-a")
    cache.observed(rs("web-a", 8, replicas=0))  # the garbage collector's update before the deletion event
    assert sizes(cache) == {"web-b": 1}
    cache.wrote(rs("web-a", 12, replicas=2))  # created again (an undo to that revision)
    assert sizes(cache) == {"web-a": 2, "web-b": 1}
    cache.observed(rs("web-b", 13), deleted=True)
    assert sizes(cache) == {"web-a": 2}


def test_events_that_arrive_while_the_first_list_is_in_flight_are_not_lost() -> None:
    # The LIST is answered at version 10; before its answer is seeded, the watch delivers web-a's pods becoming
    # available (11), a new web-c (12) and web-b's deletion (13), and a late event older than the LIST (4).
    cache = ReplicaSetCache()
    assert cache.listed(KEY) is None  # the pass's LIST goes to the server
    cache.observed(rs("web-a", 11, replicas=2))
    cache.observed(rs("web-c", 12))
    cache.observed(rs("web-b", 13), deleted=True)
    cache.observed(rs("web-d", 4, replicas=5))
    cache.seed(KEY, [rs("web-a", 9), rs("web-b", 10), rs("web-d", 8, replicas=0)])
    assert sizes(cache) == {"web-a": 2, "web-c": 1, "web-d": 0}
    cache.observed(rs("web-e", 14))  # seeded: events go to the kept set as before
    assert sizes(cache) == {"web-a": 2, "web-c": 1, "web-d": 0, "web-e": 1}


def status(body: dict[str, Any], *, observed: int, replicas: int, available: int) -> dict[str, Any]:
    body["metadata"]["generation"] = 2
    body["status"] = {"observedGeneration": observed, "replicas": replicas, "availableReplicas": available}
    return body


def test_settled_once_every_replica_set_caught_up_with_its_spec() -> None:
    cache = ReplicaSetCache()
    assert cache.settled("shop", "web")  # never listed: nothing to wait for, the pass LISTs
    cache.seed(KEY, [status(rs("web-a", 5, replicas=3), observed=2, replicas=3, available=3)])
    assert cache.settled("shop", "web")
    cache.wrote(status(rs("web-b", 6, replicas=2), observed=1, replicas=0, available=0))  # a new generation
    assert not cache.settled("shop", "web")
    cache.observed(status(rs("web-b", 7, replicas=2), observed=2, replicas=2, available=1))  # a pod not yet up
    assert not cache.settled("shop", "web")
    cache.observed(status(rs("web-b", 8, replicas=2), observed=2, replicas=2, available=2))
    assert cache.settled("shop", "web")
    assert cache.settled("shop", "other")


@pytest.mark.asyncio
async def test_a_pass_woken_by_owned_objects_runs_once_they_settle_without_waiting_out_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(controller_module, "OWNED_SETTLE_SECONDS", 600.0)  # a wait for the timer fails the test
    controller = build_controller(ControllerConfig(server="http://127.0.0.1:9", namespace="shop"))
    try:
        controller.replica_sets.seed(KEY, [status(rs("web-a", 5, replicas=2), observed=1, replicas=0, available=0)])
        worker = _Worker(urgent=False)
        settling = asyncio.create_task(controller._settle("shop/web", worker))
        await asyncio.sleep(0)
        assert not settling.done()  # the scale's burst is still due
        controller.replica_sets.observed(status(rs("web-a", 6, replicas=2), observed=2, replicas=2, available=2))
        worker.wake.set()
        await asyncio.wait_for(settling, timeout=30)  # settled: no wait for the rest of OWNED_SETTLE_SECONDS
        # Already settled: the pass looks at once.
        again = asyncio.create_task(controller._settle("shop/web", _Worker(urgent=False)))
        await asyncio.sleep(0)
        assert again.done()
    finally:
        await controller.client.close()


def test_a_listed_replica_set_is_a_copy_a_pass_may_change_and_kept_without_managed_fields() -> None:
    cache = ReplicaSetCache()
    body = rs("web-a", 5, replicas=2)
    body["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}]
    cache.seed(KEY, [body])
    listed = cache.listed(KEY) or []
    listed[0]["spec"]["replicas"] = 7  # a pass building its patch on what it read
    assert sizes(cache) == {"web-a": 2}
    assert "managedFields" not in (cache.listed(KEY) or [{}])[0]["metadata"]
    assert body["metadata"]["managedFields"], "the caller's object is left alone"


@pytest.mark.asyncio
async def test_a_delete_the_server_did_not_do_leaves_the_replica_set_listed() -> None:
    cache = ReplicaSetCache()
    cache.seed(KEY, [rs("web-a", 5), rs("web-b", 6)])
    client = KubeClient.for_server("http://127.0.0.1:9")  # nothing listens: every call fails
    kube = CachedKube(BlockingKube(client, asyncio.get_running_loop(), timeout=30), cache)
    try:
        with pytest.raises(AdapterError):
            await asyncio.to_thread(kube.delete, REPLICA_SETS, "web-a", "shop")
    finally:
        await client.close()
    assert sizes(cache) == {"web-a": 1, "web-b": 1}
