"""A tiny HTTP app for proxy tests and the benchmark, run as its own process: ``python -m tests.e2e.proxy.backend``.

It prints ``{"port": N}`` once bound (``--port 0`` picks a free port) and answers:
``/echo`` (method, path, headers and body size as JSON), ``/status/CODE``, ``/sleep/MS``, ``/stream/N`` (N chunks
of 1 KiB, flushed one by one), ``/stats`` (how many requests it has served), anything else: its ``--name``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web


def build(name: str) -> web.Application:
    served = {"count": 0}

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != "/stats":
            served["count"] += 1
        return await handler(request)

    async def echo(request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        body = {
            "name": name,
            "method": request.method,
            "path": request.path_qs,
            "headers": [[key, value] for key, value in request.headers.items()],
            "size": size,
            "sha256": digest.hexdigest(),
        }
        return web.json_response(body)

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text=name)

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(text=name)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(int(request.match_info["n"])):
            await response.write(b"x" * 1024)
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"name": name, "served": served["count"]})

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application(middlewares=[count])
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code:\\d+}", status)
    app.router.add_get("/sleep/{ms:\\d+}", sleep)
    app.router.add_get("/stream/{n:\\d+}", stream)
    app.router.add_get("/stats", stats)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def serve(name: str, port: int) -> None:
    runner = web.AppRunner(build(name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": bound}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="v1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.port))


if __name__ == "__main__":
    main()
