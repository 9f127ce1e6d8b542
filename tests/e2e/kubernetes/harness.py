"""Scenario helpers: the emulator with Headway's kinds, a controller running embedded, a stand-in kubelet.

The kubelet's job (pods becoming ready) is played by `Kubelet`, which copies each ReplicaSet's desired replicas
into its status through the /status subresource, as the ReplicaSet controller and kubelet would report them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from headway.bootstrap.kubernetes import build_controller
from headway.core import commands
from headway.core.errors import AdapterError
from headway.engine.reconcile import update_status
from headway.kube.client import HTTP_ROUTES, REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.runtimes.kubernetes.controller import Controller, ControllerConfig
from headway.spec.rollout import Rollout
from headway.stores.k8s_status import KubernetesStatusStore
from tests.e2e.kubernetes.emulator import ApiServer

GROUP = "headway.dev"


def serve() -> ApiServer:
    server = ApiServer()
    server.__enter__()
    for plural, kind in (
        ("rollouts", "Rollout"),
        ("analysisruns", "AnalysisRun"),
        ("analysistemplates", "AnalysisTemplate"),
        ("experiments", "Experiment"),
    ):
        server.emulator.declare(GROUP, "v1alpha1", plural, kind)
    server.emulator.declare(GROUP, "v1alpha1", "clusteranalysistemplates", "ClusterAnalysisTemplate", namespaced=False)
    return server


@contextlib.asynccontextmanager
async def rate_endpoint(answer: dict[str, float]) -> AsyncIterator[str]:
    """A metrics endpoint on 127.0.0.1 answering ``answer`` as JSON at ``/rate`` (as it is at each request, so a
    test may change it); yields the URL."""

    async def rate(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/rate", rate)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/rate"
    finally:
        await runner.cleanup()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "") -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout`` seconds (generous: CI is slow)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(api: ApiServer, client: KubeClient | None = None, **config: Any) -> AsyncIterator[Controller]:
    """A controller embedded in this event loop against ``api`` (through ``client``, e.g. one that records its
    requests), stopped gracefully afterwards."""
    settings = {"server": api.url, "lease_seconds": 3.0, **config}
    controller = build_controller(ControllerConfig(**settings), client=client)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(controller.run(stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await controller.client.close()


class Kubelet:
    """Marks every ReplicaSet's pods ready and available shortly after they are wanted."""

    def __init__(self, client: KubeClient, *, namespace: str = "default") -> None:
        self._client = client
        self._namespace = namespace
        self.paused = False
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            if not self.paused:
                try:
                    replica_sets = await self._client.list(REPLICA_SETS, self._namespace)
                except AdapterError:  # a slow or busy server: the next round sees
                    replica_sets = []
                for rs in replica_sets:
                    wanted = int(rs["spec"].get("replicas") or 0)
                    status = rs.get("status") or {}
                    if status.get("readyReplicas") != wanted or status.get("replicas") != wanted:
                        ready = {"replicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted}
                        with contextlib.suppress(Exception):  # the RS may be gone; next round sees
                            await self._client.patch(
                                REPLICA_SETS, rs["metadata"]["name"], self._namespace, {"status": ready}, status=True
                            )
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def rollout_body(
    name: str = "web", *, image: str = "example/web:1", steps: list[dict[str, Any]] | None = None, **strategy: Any
) -> dict[str, Any]:
    """A Gateway API canary (or, with ``blueGreen=...``, a blue/green) Rollout in headway.dev/v1alpha1."""
    if "blueGreen" in strategy:
        chosen: dict[str, Any] = {"blueGreen": strategy["blueGreen"]}
    else:
        chosen = {
            "canary": {
                "canaryService": f"{name}-canary",
                "stableService": f"{name}-stable",
                "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": name}}},
                "steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}],
                "scaleDownDelaySeconds": 0,  # old revisions go at once: tests wait for Healthy, not for timers
                "abortScaleDownDelaySeconds": 0,
                **strategy,
            }
        }
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
            "strategy": chosen,
        },
    }


async def install(client: KubeClient, name: str = "web", *, services: tuple[str, ...] = ("stable", "canary")) -> None:
    """The user's Services and HTTPRoute, as they exist before the Rollout."""
    for suffix in services:
        body = {"metadata": {"name": f"{name}-{suffix}", "namespace": "default"}, "spec": {"selector": {"app": name}}}
        await client.create(SERVICES, body)
    backends = [
        {"name": f"{name}-stable", "port": 80, "weight": 100},
        {"name": f"{name}-canary", "port": 80, "weight": 0},
    ]
    route = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": backends}]},
    }
    await client.create(HTTP_ROUTES, route)


async def canary_weight(client: KubeClient, name: str = "web") -> int | None:
    route = await client.get(HTTP_ROUTES, name, "default")
    if route is None:
        return None
    for ref in route["spec"]["rules"][-1]["backendRefs"]:
        if ref["name"] == f"{name}-canary":
            return int(ref.get("weight", 0))
    return None


async def status(client: KubeClient, name: str = "web") -> dict[str, Any]:
    obj = await client.get(rollouts(GROUP), name, "default")
    return (obj or {}).get("status") or {}


def promote(api: ApiServer, name: str = "web") -> None:
    """What ``headway promote`` does: apply the control to the status, written with the version read (blocking)."""
    body = api.kube.get(rollouts(GROUP), name, "default")
    assert body is not None
    rollout = Rollout.model_validate(body)
    store = KubernetesStatusStore(api.kube, rollouts(GROUP))
    update_status(store, f"default/{name}", lambda status: commands.promote(rollout, status)[1])
