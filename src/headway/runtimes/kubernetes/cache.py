"""The ReplicaSets of each Rollout, kept from the controller's watch, so a pass reads them without a LIST.

Argo serves its reads from informer caches; this is the same idea for the one read that every pass and every round
of a pass makes (`KubernetesPlatform.revisions`). A Rollout's set is seeded by one real LIST (authoritative at that
moment), then kept current by the watch's events and by the answers of the controller's own writes (a create or
patch returns the object as stored, so a pass never reads back less than it wrote). An event older than what is
kept (resourceVersions are etcd revisions: numbers) is ignored; a ReplicaSet the controller deleted stays gone until
the watch says it was deleted or the controller creates it again. Everything else goes to the server unchanged.

Each ReplicaSet is kept `pack`ed, with the two facts the controller asks of it without a pass (its
resourceVersion, and whether it has caught up with its spec) beside it: a fleet's cache is then one small bytes
object per ReplicaSet, and every LIST answered from it is a fresh copy a pass may change.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headway.kube.client import REPLICA_SETS, BlockingKube, Body, Kind
from headway.platforms.kubernetes import ROLLOUT_LABEL
from headway.runtimes.kubernetes.packed import pack, unpack

Key = tuple[str, str]
"""(namespace, rollout name)."""


def _version(body: Mapping[str, Any]) -> int | None:
    raw = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else None


def _key(body: Mapping[str, Any]) -> tuple[Key, str] | None:
    meta = body.get("metadata") or {}
    rollout = (meta.get("labels") or {}).get(ROLLOUT_LABEL)
    if not rollout or not meta.get("name"):
        return None
    return (str(meta.get("namespace") or "default"), str(rollout)), str(meta["name"])


@dataclass(frozen=True, slots=True)
class _Kept:
    """One ReplicaSet as the cache holds it."""

    version: int | None
    caught_up: bool
    packed: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Kept:
        return cls(_version(body), _caught_up(body), pack(body))


def _after(new: int | None, old: int | None) -> bool:
    """Whether version ``new`` is later than ``old``: resourceVersions are etcd revisions, so numbers on a real
    server; where either is not a number, the new one (our own write's answer, or the watch's latest word)."""
    return new is None or old is None or new > old


class ReplicaSetCache:
    """Per Rollout, its ReplicaSets by name; fed from the event loop (watch) and pass threads (writes)."""

    def __init__(self) -> None:
        self._sets: dict[Key, dict[str, _Kept]] = {}
        self._deleted: dict[Key, set[str]] = {}
        self._seeding: dict[Key, dict[str, tuple[_Kept, bool]]] = {}
        """While a Rollout's first LIST is in flight: the events that arrived meanwhile (newest per name, and
        whether it was a deletion). The LIST may have been answered before them: `seed` must not lose them, or
        the cache would keep the older copy until that ReplicaSet happens to change again."""
        self._lock = threading.Lock()

    def listed(self, key: Key) -> builtins.list[Body] | None:
        """The Rollout's ReplicaSets, or None until a LIST seeded them (events from now on wait for `seed`)."""
        with self._lock:
            found = self._sets.get(key)
            if found is None:
                self._seeding.setdefault(key, {})
                return None
            return [unpack(kept.packed) for kept in found.values()]

    def seed(self, key: Key, items: builtins.list[Body]) -> None:
        with self._lock:
            fresh = {str(item["metadata"]["name"]): _Kept.of(item) for item in items}
            for name, (event, deleted) in self._seeding.pop(key, {}).items():
                listed = fresh.get(name)
                if listed is not None and not _after(event.version, listed.version):
                    continue  # the LIST already saw it
                if deleted:
                    fresh.pop(name, None)
                else:
                    fresh[name] = event
            self._sets[key] = fresh

    def observed(self, body: Body, *, deleted: bool = False) -> None:
        """A watch event (or a write's answer, ``deleted`` False)."""
        where = _key(body)
        if where is None:
            return
        key, name = where
        with self._lock:
            kept = self._sets.get(key)
            if kept is None:
                pending = self._seeding.get(key)
                if pending is not None and (name not in pending or _after(_version(body), pending[name][0].version)):
                    pending[name] = (_Kept.of(body), deleted)
                return  # not seeded yet: its first LIST sees the server's state, `seed` adds anything newer
            if deleted:
                kept.pop(name, None)
                self._deleted.get(key, set()).discard(name)
            elif name not in self._deleted.get(key, set()) and (
                name not in kept or _after(_version(body), kept[name].version)
            ):
                kept[name] = _Kept.of(body)

    def wrote(self, body: Body) -> None:
        where = _key(body)
        if where is not None:
            with self._lock:
                self._deleted.get(where[0], set()).discard(where[1])
        self.observed(body)

    def removed(self, namespace: str, rollout: str, name: str) -> None:
        with self._lock:
            key = (namespace, rollout)
            if key in self._sets:
                self._sets[key].pop(name, None)
                self._deleted.setdefault(key, set()).add(name)

    def settled(self, namespace: str, rollout: str) -> bool:
        """Whether every ReplicaSet of the Rollout has caught up with its spec, as far as the watch has told: the
        ReplicaSet controller has seen its latest generation and all its pods are there and available. Until then
        more events of the burst a write starts are due (the scale's echo, then the status the ReplicaSet
        controller writes, then pods becoming available); once settled, nothing is, and a pass can look at once.
        Unknown (not seeded): settled, the pass LISTs."""
        with self._lock:
            kept = self._sets.get((namespace, rollout))
            return kept is None or all(entry.caught_up for entry in kept.values())

    def forget(self, namespace: str, rollout: str) -> None:
        with self._lock:
            self._sets.pop((namespace, rollout), None)
            self._deleted.pop((namespace, rollout), None)
            self._seeding.pop((namespace, rollout), None)


def _caught_up(body: Mapping[str, Any]) -> bool:
    meta, spec, status = (body.get(part) or {} for part in ("metadata", "spec", "status"))
    wanted = int(spec.get("replicas", 1))
    return (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("replicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) == wanted
    )


def newer(candidate: Mapping[str, Any], kept: Mapping[str, Any]) -> bool:
    """Whether ``candidate`` is a later version of the object than ``kept`` (`_after` their resourceVersions)."""
    return _after(_version(candidate), _version(kept))


class CachedKube(BlockingKube):
    """`BlockingKube` whose LIST of one Rollout's ReplicaSets comes from a `ReplicaSetCache` and whose ReplicaSet
    writes update it; every other call is the server's."""

    def __init__(self, kube: BlockingKube, cache: ReplicaSetCache) -> None:
        super().__init__(kube.client, kube._loop, timeout=kube._timeout)
        self._cache = cache

    def list(
        self, kind: Kind, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Body]:
        if kind != REPLICA_SETS or namespace is None or not labels or set(labels) != {ROLLOUT_LABEL}:
            return super().list(kind, namespace, labels)
        key = (namespace, labels[ROLLOUT_LABEL])
        found = self._cache.listed(key)
        if found is None:
            found = super().list(kind, namespace, labels)
            self._cache.seed(key, found)
        return found

    def create(self, kind: Kind, body: Body) -> Body:
        created = super().create(kind, body)
        if kind == REPLICA_SETS:
            self._cache.wrote(created)
        return created

    def patch(
        self, kind: Kind, name: str, namespace: str | None, patch: Body | builtins.list[Body], *, status: bool = False
    ) -> Body:
        patched = super().patch(kind, name, namespace, patch, status=status)
        if kind == REPLICA_SETS:
            self._cache.wrote(patched)
        return patched

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        """Gone from the cache once the server said so: a delete that failed leaves the ReplicaSet listed."""
        super().delete(kind, name, namespace)
        if kind == REPLICA_SETS and namespace is not None:
            rollout = name.rsplit("-", 1)[0]  # `replica_set_name`: <rollout>-<hash>, the hash has no dash
            self._cache.removed(namespace, rollout, name)
