"""The sample app of the embedded demo: one tiny HTTP service whose versions behave differently on purpose.

Headway's local platform starts it with ``PORT`` (a free port on 127.0.0.1) and ``HEADWAY_VERSION`` (the
container's ``image``). Every answer carries ``X-Version`` so a load generator can tell which revision served it,
and an app error (500) from a proxy's 502/503. Versions named in ``FAULTY_VERSIONS`` fail ``FAULT_ERROR_RATE``
of their requests and answer ``FAULT_LATENCY_MS`` slower: the bad release the analysis must catch.

Routes: ``/healthz`` (readiness), anything else answers ``{"version": ...}``. SIGTERM stops it gracefully:
in-flight requests finish before it exits, as Kubernetes expects of a pod.

Knobs for tests of the platform: ``READY_AFTER_SECONDS`` (``/healthz`` answers 503 until then: a slow start),
``CRASH_AFTER_SECONDS`` (exit 1 after that long: a crash loop), ``LATENCY_MS`` (every version, e.g. to keep
requests in flight during a drain).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time

from aiohttp import web


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        sys.exit(f"app: {name} must be a number, got {raw!r}")


def build(version: str, *, error_rate: float, latency: float, ready_after: float = 0.0) -> web.Application:
    headers = {"X-Version": version}
    rng = random.Random()
    ready_at = time.monotonic() + ready_after

    async def health(_: web.Request) -> web.Response:
        if time.monotonic() < ready_at:
            return web.Response(status=503, text="starting", headers=headers)
        return web.Response(text="ok", headers=headers)

    async def serve(_: web.Request) -> web.Response:
        if latency > 0:
            await asyncio.sleep(latency)
        if error_rate > 0 and rng.random() < error_rate:
            return web.json_response({"version": version, "error": "injected fault"}, status=500, headers=headers)
        return web.json_response({"version": version}, headers=headers)

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


def main() -> None:
    port_text = os.environ.get("PORT", "")
    if not port_text.isdigit():
        sys.exit(f"app: PORT must be a port number, got {port_text!r}")
    version = os.environ.get("HEADWAY_VERSION", "dev")
    faulty = {v.strip() for v in os.environ.get("FAULTY_VERSIONS", "").split(",") if v.strip()}
    bad = version in faulty or any(version.endswith(":" + v) for v in faulty)
    error_rate = _float("FAULT_ERROR_RATE", 0.2) if bad else 0.0
    latency = (_float("FAULT_LATENCY_MS", 100.0) if bad else 0.0) / 1000 + _float("LATENCY_MS", 0.0) / 1000
    crash_after = _float("CRASH_AFTER_SECONDS", 0.0)
    if crash_after > 0:
        threading.Timer(crash_after, os._exit, args=(1,)).start()
    app = build(version, error_rate=error_rate, latency=latency, ready_after=_float("READY_AFTER_SECONDS", 0.0))
    web.run_app(app, host="127.0.0.1", port=int(port_text), print=None, access_log=None, shutdown_timeout=10)


if __name__ == "__main__":
    main()
