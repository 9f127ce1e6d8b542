"""What the fault tests share: a real embedded daemon with the sample app behind its proxy, a bounded load on it,
and a local web metric endpoint whose answers a test can break.

The daemon, the manifests and the load generator are the end-to-end harness's (`tests.e2e.embedded.harness`); the
load is small (`RATE` requests per second for a few seconds) so the whole suite stays within about a minute and
a half on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.e2e.embedded.harness import DaemonProcess, loadgen, manifest, running_daemon

__all__ = [
    "RATE",
    "DaemonProcess",
    "Load",
    "MetricEndpoint",
    "deploy",
    "deploy_all",
    "manifest",
    "running_daemon",
    "template",
]

RATE = 200.0


async def deploy(daemon: DaemonProcess, *documents: str, name: str = "web") -> dict[str, Any]:
    """Apply ``documents`` (a Rollout of `manifest` and any templates) and wait until v1 serves on 2 replicas."""
    return (await deploy_all(daemon, list(documents), [name]))[name]


async def deploy_all(daemon: DaemonProcess, documents: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """Apply ``documents`` at once and wait, side by side, until every rollout of ``names`` serves v1."""
    await daemon.call("POST", "/api/v1/apply", "\n---\n".join(documents), expect=201)

    def serving(view: dict[str, Any]) -> bool:
        return bool(view["phase"] == "Healthy" and view["readyReplicas"] >= 2 and "trafficUrl" in view)

    views = await asyncio.gather(*(daemon.wait_rollout(name, serving, f"{name} to serve v1") for name in names))
    return dict(zip(names, views, strict=True))


class Load:
    """`loadgen.LoadGenerator` at `RATE` on ``url`` in the background, from `start` until `stop`."""

    def __init__(self, url: str, rate: float = RATE) -> None:
        self.generator = loadgen.LoadGenerator(url, rate=rate, timeout=5.0)
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> Load:
        self._task = asyncio.create_task(self.generator.run())
        return self

    async def stop(self) -> Any:
        self.generator.stop()
        assert self._task is not None
        return await self._task

    @property
    def stats(self) -> Any:
        return self.generator.stats

    @property
    def machinery(self) -> int:
        failures: int = self.generator.stats.machinery_failures
        return failures


@contextlib.asynccontextmanager
async def loaded(url: str, rate: float = RATE) -> AsyncIterator[Load]:
    load = Load(url, rate).start()
    try:
        yield load
    finally:
        await load.stop()


class MetricEndpoint:
    """A local web metric: ``url("ok")`` answers ``{"ok": 1}``, ``url("500")`` answers HTTP 500, ``url("hang")``
    never answers in time; `calls` counts the requests per mode."""

    def __init__(self) -> None:
        self.base = ""
        self.calls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}"

    async def start(self) -> None:
        async def answer(request: web.Request) -> web.Response:
            mode = request.match_info["mode"]
            self.calls[mode] += 1
            if mode == "500":
                return web.json_response({"error": "injected"}, status=500)
            if mode == "hang":
                await asyncio.sleep(30)
            return web.json_response({"ok": 1})

        app = web.Application()
        app.router.add_get("/metric/{mode}", answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}/metric"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def template(name: str, provider: dict[str, Any], *, interval: str = "500ms", count: int = 3, errors: int = 1) -> str:
    """An AnalysisTemplate with one metric that passes on ``result == 1`` and errors after ``errors`` + 1 errors
    in a row (an errored measurement is retried after 10 s, as in Argo, so fault tests allow none: 0)."""
    return json.dumps(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {
                "metrics": [
                    {
                        "name": "ok",
                        "interval": interval,
                        "count": count,
                        "successCondition": "result == 1",
                        "consecutiveErrorLimit": errors,
                        "provider": provider,
                    }
                ]
            },
        }
    )


def web_provider(url: str, timeout: int = 1) -> dict[str, Any]:
    return {"web": {"url": url, "timeoutSeconds": timeout, "jsonPath": "{$.ok}"}}
