"""kmock's KubernetesEmulator, extended with the API-server semantics the controller relies on.

Plain kmock stores objects as given (DEPENDENCIES.md §2). This subclass adds, over the same real HTTP:
- on create: uid, resourceVersion, generation 1, creationTimestamp, metadata.namespace from the URL, 201;
- on patch (merge or JSON patch): a 409 when ``metadata.resourceVersion`` in the body (or a ``test`` op) is stale,
  422 for a failed ``test`` op, spec/status separation (the main resource ignores ``status``, ``/status``
  changes only ``status``), generation bumped on changes outside metadata/status only, resourceVersion bumped;
- on list: equality label selectors and a real list resourceVersion.
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
import jsonpatch
from kmock import KubernetesEmulator, ResourceInfo, Server, resource
from kmock._internal import enums, rendering
from kmock._internal.k8s import KubernetesError, KubernetesObjectNotFoundError

from headway.runtimes.kubernetes.client import BlockingKube, KubeClient


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


class FidelityEmulator(KubernetesEmulator):
    """The emulator with resourceVersions, conflicts, generations, /status separation and label selectors."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
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
        if request.resource is not None and request.action == enums.action.CREATE:
            self._stamp_create(request)
            self.writes[request.resource.plural or ""] += 1
            response = await super()._handle(request)
            if response.status == 200:
                response.set_status(201)
            return response
        if request.resource is not None and request.action == enums.action.UPDATE and request.name is not None:
            self.writes[request.resource.plural or ""] += 1
            try:
                return aiohttp.web.json_response(await self._update(request))
            except KubernetesError as error:
                return await self._render_error(error)
        return await super()._handle(request)

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

    async def _update(self, request: rendering.Request) -> dict[str, Any]:
        assert request.resource is not None
        key = (request.resource, request.namespace, request.name or "")
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise KubernetesObjectNotFoundError()
            stored = self._objects[key]
            old: dict[str, Any] = copy.deepcopy(stored.raw)
            new = self._patched(old, request.data)
            current_rv = old.get("metadata", {}).get("resourceVersion")
            sent_rv = new.get("metadata", {}).get("resourceVersion")
            if sent_rv not in (None, current_rv):
                raise _refused(409, "Conflict", f"the object has been modified (resourceVersion {sent_rv} is stale)")
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
            meta = new.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "namespace", "name"):
                if field in old.get("metadata", {}):
                    meta[field] = old["metadata"][field]
            if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }:
                meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
            else:
                meta["generation"] = old.get("metadata", {}).get("generation", 1)
            meta["resourceVersion"] = self._next_version()
            stored.create(new)
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
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        assert isinstance(payload, dict)
        if selector:
            payload["items"] = [
                item for item in payload["items"] if _matches(item.get("metadata", {}).get("labels") or {}, selector)
            ]
        payload["metadata"] = {"resourceVersion": str(next(self._versions))}
        return payload

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
