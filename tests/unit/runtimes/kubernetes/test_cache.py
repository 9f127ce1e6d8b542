"""The ReplicaSet cache: seeded by a LIST, kept by watch events and write answers, never moved back in time."""

from __future__ import annotations

from typing import Any

from headway.runtimes.kubernetes.cache import ReplicaSetCache

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
