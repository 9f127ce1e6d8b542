"""kmock's KubernetesEmulator, extended with the API-server semantics the controller relies on.

Plain kmock stores objects as given (docs/dependencies.md). This subclass adds, over the same real HTTP:
- on create: uid, resourceVersion, generation 1, creationTimestamp, metadata.namespace from the URL, 201;
- on patch (merge or JSON patch): a 409 when ``metadata.resourceVersion`` in the body (or a ``test`` op) is stale,
  422 for a failed ``test`` op, spec/status separation (the main resource ignores ``status``, ``/status``
  changes only ``status``), generation bumped on changes outside metadata/status only, resourceVersion bumped
  and a watch event sent only when something changed (a no-op patch leaves the object as it was);
- on list: equality label selectors and a real list resourceVersion;
- the ``/scale`` subresource: GET answers an ``autoscaling/v1`` Scale made from ``spec.replicas``,
  ``status.replicas`` and ``status.selector``; PATCH/PUT of a Scale sets ``spec.replicas`` (as an HPA or
  ``kubectl scale`` writes it), bumping generation and resourceVersion.

kmock keeps every request it served and every version of every object, and matches each new request by
scanning that request history (docs/dependencies.md): time per request grows with the requests before it, so a
run's total time grows quadratically. No test here asserts on that history, so by default
(``keep_history=False``) the emulator keeps only the requests in flight and each object's current version,
and looks named objects up by key instead of scanning them all: a 1,000-Rollout benchmark then takes minutes.
Pass ``keep_history=True`` to use kmock's request assertions (``emulator["patch"]``, ``objects[..., 0]``).
``ApiServer`` runs it on an event loop in a background thread, so synchronous adapters and contract tests can
call a real server through `BlockingKube`.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import itertools
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
from kmock import KubernetesEmulator, ResourceInfo, Server, resource
from kmock._internal import enums, k8s_dicts, rendering
from kmock._internal.k8s import (
    KubernetesError,
    KubernetesObjectNotFoundError,
    KubernetesResourceNotFoundError,
    KubernetesScaffold,
)

from headway.kube.client import BlockingKube, KubeClient


def _refused(status: int, reason: str, message: str) -> KubernetesError:
    return KubernetesError(status=status, reason=reason, message=message, details={})


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _check_version(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """409 when the body carries a resourceVersion other than the stored one (an optimistic write gone stale)."""
    current = (old.get("metadata") or {}).get("resourceVersion")
    sent = (new.get("metadata") or {}).get("resourceVersion")
    if sent not in (None, current):
        raise _refused(409, "Conflict", f"the object has been modified (resourceVersion {sent} is stale)")


def _scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale of an object whose CRD maps replicas and selector as the Rollout's does."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {field: meta[field] for field in _SCALE_META if field in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
        "status": {"replicas": int(status.get("replicas") or 0), "selector": str(status.get("selector") or "")},
    }


_SCALE_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


@attrs.define(kw_only=True, slots=False)
class FidelityEmulator(KubernetesEmulator):
    """The emulator with resourceVersions, conflicts, generations, /status separation, /scale and label selectors."""

    keep_history: bool = False
    """Keep kmock's request history and every object version (for kmock's own assertions); off: O(1) per request."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self._in_flight: dict[int, rendering.Request] = {}
        self._by_resource: dict[resource, list[tuple[str | None, str]]] = {}
        self._indexed = 0
        self._last_indexed: object = None
        self.writes: collections.Counter[str] = collections.Counter()
        self.resources.load_bundled()

    def declare(self, group: str, version: str, plural: str, kind: str, *, namespaced: bool = True) -> None:
        """Make a custom resource discoverable (kopf lists and watches only what discovery shows)."""
        self.resources[f"{group}/{version}/{plural}"] = ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
            subresources={"status", "scale"},
        )

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # The real server says exactly "application/json"; lightkube parses a Status only then.
        response = await super()._render_error(exc)
        response.headers["Content-Type"] = "application/json"
        return response

    def _next_version(self) -> str:
        return str(next(self._versions))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.keep_history:
            return await self._dispatch(request)
        # kmock matches a request by iterating its history until it finds that very request: keep only the
        # requests in flight there (a request must stay until kmock has matched it, even while others arrive).
        self._in_flight[id(request)] = request
        self._requests[:] = self._in_flight.values()
        try:
            return await self._dispatch(request)
        finally:
            del self._in_flight[id(request)]
            for payload in self._payloads:
                payload._requests.clear()  # each reaction's log of the requests it served

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.subresource == "scale" and request.name is not None:
            try:
                return aiohttp.web.json_response(await self._scale(request))
            except KubernetesError as error:
                return await self._render_error(error)
        if request.resource is not None and request.action == enums.action.CREATE:
            self._stamp_create(request)
            self.writes[request.resource.plural or ""] += 1
            response = await super()._handle(request)
            if response.status == 200:
                response.set_status(201)
            self._trim(self._named(request))
            return response
        if request.resource is not None and request.action == enums.action.UPDATE and request.name is not None:
            self.writes[request.resource.plural or ""] += 1
            try:
                return aiohttp.web.json_response(await self._update(request))
            except KubernetesError as error:
                return await self._render_error(error)
        return await super()._handle(request)

    def _named(self, request: rendering.Request) -> k8s_dicts.Object | None:
        """The stored object a request names (in its URL, or for a create in its body), found by key."""
        assert request.resource is not None
        name = request.name
        namespace = request.namespace
        if name is None and isinstance(request.data, Mapping):
            meta = request.data.get("metadata") or {}
            name, namespace = meta.get("name"), namespace or meta.get("namespace")
        return self._objects._objects.get((request.resource, namespace, name or ""))

    def _trim(self, stored: k8s_dicts.Object | None) -> None:
        """Drop the object's past versions unless kmock's history is wanted (deleted ones keep their last)."""
        if not self.keep_history and stored is not None and not stored.deleted and len(stored.history) > 1:
            del stored.history[:-1]

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        # kmock names the core group "/v1"; the real server (and kubectl's REST mapping) says "v1".
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion") == "/v1":
            payload["groupVersion"] = "v1"
        return payload

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            stored = self._named(request)
        if stored is None or stored.deleted:
            raise KubernetesObjectNotFoundError()
        return stored.raw

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            stored = self._named(request)
        assert stored is not None  # created in KubernetesEmulator._handle
        return stored.last.raw

    def _stamp_create(self, request: rendering.Request) -> None:
        body = request.data
        if not isinstance(body, dict):
            return
        meta = body.setdefault("metadata", {})
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_version(),
            generation=1,
            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def _current(self, request: rendering.Request) -> tuple[k8s_dicts.Object, dict[str, Any]]:
        """The stored object the request names and a private copy of its current version (404 when absent)."""
        stored = self._named(request)
        if stored is None or stored.deleted:
            raise KubernetesObjectNotFoundError()
        old: dict[str, Any] = copy.deepcopy(stored.raw)
        return stored, old

    async def _update(self, request: rendering.Request) -> dict[str, Any]:
        async with self._lock:
            stored, old = self._current(request)
            new = self._patched(old, request.data)
            _check_version(old, new)
            if request.subresource == "status":
                status = new.get("status")
                new = {k: v for k, v in old.items() if k != "status"}
                if status is not None:
                    new["status"] = status
            elif request.subresource is None:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            return await self._commit(request, stored, old, new)

    async def _scale(self, request: rendering.Request) -> dict[str, Any]:
        """The /scale subresource as the API server serves it for a CRD declaring specReplicasPath
        ``.spec.replicas``, statusReplicasPath ``.status.replicas`` and labelSelectorPath ``.status.selector``."""
        async with self._lock:
            stored, old = self._current(request)
            if request.method == enums.method.GET:
                return _scale_of(old)
            if request.method == enums.method.PUT:
                if not isinstance(request.data, Mapping):
                    raise _refused(400, "BadRequest", "the body must be an autoscaling/v1 Scale")
                wanted: dict[str, Any] = dict(request.data)
            elif request.method == enums.method.PATCH:
                wanted = self._patched(_scale_of(old), request.data)
            else:
                raise _refused(405, "MethodNotAllowed", f"{request.method} is not allowed on /scale")
            _check_version(old, wanted)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _refused(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}: must be an integer >= 0")
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            return _scale_of(await self._commit(request, stored, old, new))

    async def _commit(
        self, request: rendering.Request, stored: k8s_dicts.Object, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Store ``new`` as the object's next version: identity kept, generation bumped when anything outside
        metadata and status changed, a new resourceVersion, and a MODIFIED event for watchers. A write that changes
        nothing is not stored at all, as on the real server: same resourceVersion, no watch event (a controller
        whose no-op writes woke itself would loop)."""
        assert request.resource is not None
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            if field in old.get("metadata", {}):
                meta[field] = old["metadata"][field]
        meta["resourceVersion"] = old.get("metadata", {}).get("resourceVersion")
        if new == old:
            return old
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }:
            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
        else:
            meta["generation"] = old.get("metadata", {}).get("generation", 1)
        meta["resourceVersion"] = self._next_version()
        stored.create(new)
        self._trim(stored)
        await self._buses[request.resource].put({"type": "MODIFIED", "object": copy.deepcopy(new)})
        return new

    @staticmethod
    def _patched(old: dict[str, Any], patch: Any) -> dict[str, Any]:
        if isinstance(patch, list):
            try:
                result: dict[str, Any] = jsonpatch.apply_patch(old, patch)
            except jsonpatch.JsonPatchTestFailed as error:
                raise _refused(422, "Invalid", f"JSON patch test failed: {error}") from error
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise _refused(422, "Invalid", f"invalid JSON patch: {error}") from error
            return result
        if not isinstance(patch, Mapping):
            raise _refused(400, "BadRequest", "the patch must be a JSON object or a JSON-patch list")
        merged: dict[str, Any] = _merge(old, patch)
        return merged

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        async with self._lock:
            objects = self._of_resource(request.resource)
            if not objects and request.resource not in KubernetesScaffold._get_resources(self):
                raise KubernetesResourceNotFoundError()
            items = [
                obj.raw for (namespace, _), obj in objects if not obj.deleted and request.namespace in (None, namespace)
            ]
        selector = request.params.get("labelSelector")
        if selector:
            items = [item for item in items if _matches(item.get("metadata", {}).get("labels") or {}, selector)]
        return {"metadata": {"resourceVersion": str(next(self._versions))}, "items": items}

    def _of_resource(self, kind: resource) -> list[tuple[tuple[str | None, str], k8s_dicts.Object]]:
        """The stored objects of one resource, from an index kept up to date with kmock's store: kmock scans
        every object of every resource per list, which made each pass cost O(all objects)."""
        stored = self._objects._objects
        last = next(reversed(stored), None)
        if len(stored) < self._indexed or (len(stored) == self._indexed and last != self._last_indexed):
            self._by_resource.clear()  # objects were removed from kmock's store (not soft-deleted): start over
            self._indexed = 0
        if len(stored) > self._indexed:
            for key in itertools.islice(stored, self._indexed, None):
                self._by_resource.setdefault(key[0], []).append((key[1], key[2]))
            self._indexed, self._last_indexed = len(stored), last
        return [
            ((namespace, name), stored[(kind, namespace, name)])
            for namespace, name in self._by_resource.get(kind, [])
            if (kind, namespace, name) in stored
        ]

    def object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, for assertions (None when absent or deleted)."""
        key = (resource(group=group, version=version, plural=plural), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        raw: dict[str, Any] = copy.deepcopy(self._objects[key].raw)
        return raw


class ApiServer:
    """The emulator served on 127.0.0.1 from an event loop in a background thread, plus clients for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="kmock", daemon=True)
        self.emulator: FidelityEmulator
        self.url = ""
        self.client: KubeClient
        self.kube: BlockingKube
        self._stack: Any = None

    def __enter__(self) -> ApiServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        import contextlib

        self._stack = contextlib.AsyncExitStack()
        self.emulator = await self._stack.enter_async_context(FidelityEmulator())
        server = await self._stack.enter_async_context(Server(self.emulator))
        self.url = str(server.url).rstrip("/")
        self.client = KubeClient.for_server(self.url)
        self.kube = BlockingKube(self.client, self.loop)

    async def _stop(self) -> None:
        await self.client.close()
        await self._stack.aclose()

    def objects(self, plural: str) -> Iterator[dict[str, Any]]:
        for (res, _namespace, _name), obj in list(self.emulator.objects.items()):
            if res.plural == plural and not obj.deleted:
                yield copy.deepcopy(obj.raw)
