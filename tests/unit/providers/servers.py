"""A tiny real HTTP server on 127.0.0.1 for provider tests: routes are plain aiohttp handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from aiohttp import web

Route = tuple[str, str, Callable[[web.Request], object]]


@asynccontextmanager
async def serve(routes: Iterable[Route]) -> AsyncIterator[str]:
    """Serve `routes` (method, path, handler) on an ephemeral loopback port; yields the base URL."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, shutdown_timeout=0.2, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
