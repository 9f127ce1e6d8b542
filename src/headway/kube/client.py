"""The one module that talks to the Kubernetes API server (lightkube, async), with a blocking facade for adapters.

Everything above this module sees plain dicts (the wire form of objects) and our own errors: a 404 is `NotFoundError`,
a 409 is `ApiConflictError` (a `TemporaryError` retried at once), 429/5xx/timeouts are temporary, other 4xx permanent.
Keeping every call here is what lets tests mock at our own seam and lets the benchmark count requests.

The ports (`Platform`, `TrafficRouter`, `StatusStore`) are synchronous, because the engine is shared with the
simulator and the embedded mode. The controller runs each pass in a worker thread; `BlockingKube` hands every
call back to the controller's event loop, so one async HTTP connection pool serves all workers.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import functools
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType

from headway.core.errors import PermanentError, TemporaryError

Body = dict[str, Any]
T = TypeVar("T")

CALL_TIMEOUT = 30.0
"""Seconds a blocking call waits for the event loop before giving up (temporary)."""


@dataclass(frozen=True)
class Kind:
    """A resource type as the API server addresses it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


REPLICA_SETS = Kind("apps", "v1", "ReplicaSet", "replicasets")
DEPLOYMENTS = Kind("apps", "v1", "Deployment", "deployments")
SERVICES = Kind("", "v1", "Service", "services")
EVENTS = Kind("", "v1", "Event", "events")
LEASES = Kind("coordination.k8s.io", "v1", "Lease", "leases")
HTTP_ROUTES = Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
DEFAULT_GROUP = "headway.dev"


def rollouts(group: str = DEFAULT_GROUP) -> Kind:
    return Kind(group, "v1alpha1", "Rollout", "rollouts")


def analysis_runs(group: str = DEFAULT_GROUP) -> Kind:
    return Kind(group, "v1alpha1", "AnalysisRun", "analysisruns")


def experiments(group: str = DEFAULT_GROUP) -> Kind:
    return Kind(group, "v1alpha1", "Experiment", "experiments")


RUN_KIND_LABEL = "headway.dev/run-kind"
"""On AnalysisRuns and Experiments: what the rollout started them for (step, background, experiment, ...)."""


class NotFoundError(PermanentError):
    """The object does not exist (404)."""


class ApiConflictError(TemporaryError):
    """The object changed since it was read (409): re-read and decide again, at once."""

    def __init__(self, message: str) -> None:
        super().__init__(message, delay=0.0)


class InvalidObjectError(PermanentError):
    """The server refused the object or patch as invalid (422, or a failed JSON-patch test)."""


class KubeconfigError(PermanentError):
    """The kubeconfig cannot be read, or has no such context; the message names the flag to fix."""


@functools.cache
def _resource(kind: Kind) -> Any:
    """The lightkube class for ``kind``: a typed model when one is already registered, else a generic one."""
    try:
        if kind.namespaced:
            return create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        return create_global_resource(kind.group, kind.version, kind.kind, kind.plural)
    except ValueError:  # registered earlier by lightkube's typed models, with other verbs
        return resource_registry.get(kind.api_version, kind.kind)


def _translate(error: Exception, what: str) -> Exception:
    """Map lightkube/httpx2 exceptions to ours, naming the object."""
    code: int | None = None
    if isinstance(error, ApiError):
        code = error.status.code or error.response.status_code
        message = f"{what}: {code} {error.status.message or error.status.reason or ''}".strip()
    elif isinstance(error, httpx2.HTTPStatusError):  # an error body that is not a Status
        code = error.response.status_code
        message = f"{what}: {code} {error.response.text[:200]}"
    if code is not None:
        if code == 404:
            return NotFoundError(message)
        if code == 409:
            return ApiConflictError(message)
        if code == 422:
            return InvalidObjectError(message)
        if code == 429 or code >= 500:
            return TemporaryError(message, delay=5.0)
        return PermanentError(message)
    if isinstance(error, httpx2.HTTPError | OSError | asyncio.TimeoutError):
        return TemporaryError(f"{what}: {type(error).__name__}: {error}", delay=5.0)
    return error


def _plain(obj: Any) -> Body:
    data: Body = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def selector(labels: Mapping[str, str]) -> str:
    """``a=b,c=d``: an equality label selector."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class KubeClient:
    """Async access to the API server in plain dicts; counts reads, writes and Events posted (benchmark, tests)."""

    def __init__(self, client: AsyncClient, *, namespace: str = "default", server: str = "") -> None:
        self._client = client
        self.requests: collections.Counter[str] = collections.Counter()
        self.namespace = namespace
        """The namespace of the kubeconfig context (``default`` when it names none)."""
        self.server = server
        """The API server's URL, for messages ("cannot reach the cluster at …")."""

    @classmethod
    def for_server(cls, url: str, *, namespace: str = "default") -> KubeClient:
        """A client for an unauthenticated server (tests, kmock); lightkube's ``from_server`` needs a user."""
        config = KubeConfig.from_one(cluster=Cluster(server=url), user=User(), namespace=namespace)
        return cls(AsyncClient(config=config, field_manager="headway"), namespace=namespace, server=url)

    @classmethod
    def from_kubeconfig(
        cls, path: Path | None = None, *, context: str | None = None, field_manager: str = "headway"
    ) -> KubeClient:
        """A client for a kubeconfig context, as kubectl's ``--kubeconfig``/``--context`` choose it.

        ``path`` None: the in-cluster service account, else ``$KUBECONFIG``/``~/.kube/config``; ``context`` None:
        the current context. The context's namespace and server are kept on the client. A missing or unreadable
        file, or an unknown context, is a `KubeconfigError` saying which flag to check (never a lightkube trace).
        """
        try:
            config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_env()
            single = config.get(context_name=context)
        except Exception as error:  # lightkube raises several types for missing/invalid files and contexts  # noqa: BLE001 - fail closed: any failure becomes an error result
            if context is not None and "context" in str(error).lower():
                raise KubeconfigError(f"no context {context!r} in the kubeconfig: check --context") from None
            where = f"kubeconfig {path}" if path is not None else "the default kubeconfig"
            raise KubeconfigError(f"cannot load {where}: {error}: check --kubeconfig and --context") from None
        if single is None:
            raise KubeconfigError(f"no context {context!r} in the kubeconfig: check --context")
        namespace = single.namespace or "default"
        client = AsyncClient(config=single, field_manager=field_manager)
        return cls(client, namespace=namespace, server=str(single.cluster.server))

    @classmethod
    def from_environment(cls) -> KubeClient:
        """In-cluster service account, else ``$KUBECONFIG``/``~/.kube/config``."""
        return cls(AsyncClient(config=KubeConfig.from_env(), field_manager="headway"))

    async def close(self) -> None:
        await self._client.close()

    async def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the server serves ``plural`` in ``group/version`` (API discovery: ``GET /apis/<group>/<version>``);
        a group it does not know is False, any other failure an error."""
        self.requests["read"] += 1
        http: Any = self._client._client._client  # lightkube keeps its httpx2 client (base URL, auth, TLS) there
        try:
            response = await http.get(f"/apis/{group}/{version}")
        except Exception as error:
            raise _translate(error, f"discover {group}/{version}") from error
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            failed = httpx2.HTTPStatusError("", request=response.request, response=response)
            raise _translate(failed, f"discover {group}/{version}")
        resources = (response.json() or {}).get("resources") or []
        return any(resource.get("name") == plural for resource in resources)

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body | None:
        """The object, or None when it does not exist."""
        self.requests["read"] += 1
        try:
            obj = await self._client.get(_resource(kind), name, namespace=namespace if kind.namespaced else None)
        except Exception as error:
            translated = _translate(error, f"get {kind.kind} {namespace}/{name}")
            if isinstance(translated, NotFoundError):
                return None
            raise translated from error
        return _plain(obj)

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
    ) -> builtins.list[Body]:
        """Every object of ``kind`` (``namespace`` None or lightkube's ``ALL_NS``: all namespaces), filtered by
        equality label and field selectors; callers that need exactness filter again (some servers ignore them)."""
        self.requests["read"] += 1
        try:
            items = [
                _plain(obj)
                async for obj in self._client.list(
                    _resource(kind),
                    namespace=namespace,
                    labels=dict(labels) if labels else None,
                    fields=dict(fields) if fields else None,
                )
            ]
        except Exception as error:
            raise _translate(error, f"list {kind.plural} in {namespace}") from error
        return items

    async def create(self, kind: Kind, body: Body) -> Body:
        self.requests["event" if kind == EVENTS else "write"] += 1
        resource = _resource(kind)
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        namespace = body.get("metadata", {}).get("namespace")
        try:
            obj = await self._client.create(resource.from_dict(body), namespace=namespace)  # type: ignore[call-overload]
        except Exception as error:
            name = body.get("metadata", {}).get("name", "")
            raise _translate(error, f"create {kind.kind} {namespace}/{name}") from error
        return _plain(obj)

    async def patch(
        self,
        kind: Kind,
        name: str,
        namespace: str | None,
        patch: Body | builtins.list[Body],
        *,
        status: bool = False,
    ) -> Body:
        """A merge patch (dict) or a JSON patch (list); ``status`` patches the /status subresource.

        Include ``metadata.resourceVersion`` in a merge patch (or a ``test`` op) to make the write conditional:
        the server then answers 409 when the object moved on, which arrives here as `ApiConflictError`."""
        self.requests["write"] += 1
        resource = _resource(kind)
        target = resource.Status if status else resource
        patch_type = PatchType.JSON if isinstance(patch, list) else PatchType.MERGE
        try:
            obj = await self._client.patch(
                target, name, patch, namespace=namespace if kind.namespaced else None, patch_type=patch_type
            )
        except Exception as error:
            where = "/status" if status else ""
            raise _translate(error, f"patch {kind.kind} {namespace}/{name}{where}") from error
        return _plain(obj)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        """Delete; a missing object is already deleted."""
        self.requests["write"] += 1
        try:
            await self._client.delete(_resource(kind), name, namespace=namespace if kind.namespaced else None)
        except Exception as error:
            translated = _translate(error, f"delete {kind.kind} {namespace}/{name}")
            if isinstance(translated, NotFoundError):
                return
            raise translated from error


class BlockingKube:
    """The same calls, blocking, for the synchronous adapters; runs each on the client's event loop.

    Must not be called from that loop's own thread (it would wait for itself): the controller runs passes
    with ``asyncio.to_thread``.
    """

    def __init__(self, client: KubeClient, loop: asyncio.AbstractEventLoop, *, timeout: float = CALL_TIMEOUT) -> None:
        self.client = client
        self._loop = loop
        self._timeout = timeout

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coroutine.close()
            raise RuntimeError("BlockingKube called from its own event loop; run the pass in a thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError as error:
            future.cancel()
            raise TemporaryError(f"the API call took longer than {self._timeout:.0f}s", delay=5.0) from error

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body | None:
        return self._run(self.client.get(kind, name, namespace))

    def list(
        self, kind: Kind, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Body]:
        return self._run(self.client.list(kind, namespace, labels))

    def create(self, kind: Kind, body: Body) -> Body:
        return self._run(self.client.create(kind, body))

    def patch(
        self, kind: Kind, name: str, namespace: str | None, patch: Body | builtins.list[Body], *, status: bool = False
    ) -> Body:
        return self._run(self.client.patch(kind, name, namespace, patch, status=status))

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        self._run(self.client.delete(kind, name, namespace))


SECRETS = Kind("", "v1", "Secret", "secrets")


def analysis_templates(group: str = DEFAULT_GROUP) -> Kind:
    return Kind(group, "v1alpha1", "AnalysisTemplate", "analysistemplates")


def cluster_analysis_templates(group: str = DEFAULT_GROUP) -> Kind:
    return Kind(group, "v1alpha1", "ClusterAnalysisTemplate", "clusteranalysistemplates", namespaced=False)


JOBS = Kind("batch", "v1", "Job", "jobs")
