"""Helpers for the real-server stories: the cluster's files, the controller under test, bodies and waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headway.runtimes.kubernetes.client import HTTP_ROUTES, REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.runtimes.kubernetes.controller import Controller, ControllerConfig

GROUP = "headway.dev"
HTTP_ROUTE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "httproutes.gateway.networking.k8s.io",
        "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"},
    },
    "spec": {
        "group": "gateway.networking.k8s.io",
        "names": {"kind": "HTTPRoute", "listKind": "HTTPRouteList", "plural": "httproutes", "singular": "httproute"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {"status": {}},
            }
        ],
    },
}
"""A stand-in for the Gateway API's HTTPRoute CRD (its schema is not what these tests exercise)."""


@dataclass(frozen=True)
class RealCluster:
    state: Path
    """The control plane's directory: ``audit.log``, ``logs/``, ``pki/``."""
    admin: Path
    """The admin kubeconfig (``system:masters``)."""
    controller: Path
    """A kubeconfig with a token of the ``headway-controller`` ServiceAccount (``deploy/base``'s RBAC)."""

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.log"


@contextlib.asynccontextmanager
async def running(cluster: RealCluster, namespace: str, **config: Any) -> AsyncIterator[Controller]:
    """The controller in this event loop, as the ``headway-controller`` ServiceAccount, watching ``namespace``,
    holding a Lease of its own in ``headway-system`` (where deploy/base lets it); stopped gracefully afterwards."""
    settings: dict[str, Any] = {
        "kubeconfig": cluster.controller,
        "namespace": namespace,
        "lease_namespace": "headway-system",
        "lease_name": f"headway-{namespace}",
        "lease_seconds": 3.0,
        **config,
    }
    controller = Controller(ControllerConfig(**settings))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(controller.run(stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await controller.client.close()


async def eventually(check: Any, *, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``check`` (an async callable) until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        await asyncio.sleep(0.2)


def template(name: str, image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}]}}


def rollout_body(
    namespace: str,
    name: str = "web",
    *,
    image: str = "example/web:1",
    replicas: int = 2,
    group: str = GROUP,
    strategy: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Rollout; by default a replica-ratio canary (no router) with ``setWeight 50`` and an indefinite pause."""
    chosen = strategy or {
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}
    }
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, image),
            "strategy": chosen,
            **spec,
        },
    }


async def services(client: KubeClient, namespace: str, *names: str, app: str = "web") -> None:
    for name in names:
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        await client.create(SERVICES, body)


async def http_route(client: KubeClient, namespace: str, name: str = "web") -> None:
    backends = [{"name": f"{name}-stable", "port": 80, "weight": 100}, {"name": f"{name}-canary", "port": 80, "weight": 0}]
    route = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": backends}]},
    }
    await client.create(HTTP_ROUTES, route)


async def canary_weight(client: KubeClient, namespace: str, name: str = "web") -> int | None:
    route = await client.get(HTTP_ROUTES, name, namespace)
    if route is None:
        return None
    for ref in route["spec"]["rules"][-1]["backendRefs"]:
        if ref["name"] == f"{name}-canary":
            return int(ref.get("weight", 0))
    return None


async def status(client: KubeClient, namespace: str, name: str = "web", group: str = GROUP) -> dict[str, Any]:
    obj = await client.get(rollouts(group), name, namespace)
    return (obj or {}).get("status") or {}


async def replica_sets(client: KubeClient, namespace: str) -> list[dict[str, Any]]:
    return await client.list(REPLICA_SETS, namespace)


async def healthy_on(client: KubeClient, namespace: str, image: str, name: str = "web", group: str = GROUP) -> bool:
    """Healthy, with the stable ReplicaSet running ``image`` and every desired pod available."""
    obj = await client.get(rollouts(group), name, namespace)
    if obj is None:
        return False
    current = obj.get("status") or {}
    if current.get("phase") != "Healthy" or not current.get("stableRS"):
        return False
    if str(current.get("observedGeneration")) != str(obj["metadata"].get("generation")):
        return False
    rs = await client.get(REPLICA_SETS, f"{name}-{current['stableRS']}", namespace)
    if rs is None or rs["spec"]["template"]["spec"]["containers"][0]["image"] != image:
        return False
    return int((rs.get("status") or {}).get("availableReplicas") or 0) == int(obj["spec"].get("replicas", 1))


async def set_image(client: KubeClient, namespace: str, image: str, name: str = "web", group: str = GROUP) -> None:
    await client.patch(rollouts(group), name, namespace, {"spec": {"template": template(name, image)}})
