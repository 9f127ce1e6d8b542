"""The embedded weighted reverse proxy: the data plane of embedded mode, run as its own OS process.

Run it as ``python -m headway.runtimes.embedded.proxy --listen 127.0.0.1:8080 --admin 127.0.0.1:8081
--state-file DIR/proxy.json --token-file DIR/admin.token``. It is a separate process so that traffic keeps
flowing while the controller is killed and restarted: the controller only talks to its admin API, and the proxy
reloads its last routing state from the state file when it starts. Once bound it prints one JSON line
(``{"listen": ..., "admin": ...}``) on stdout, so a parent that asked for port 0 learns the real ports.

Per request: header routes, then smooth weighted round-robin pick a revision (`proxy_balancing`), round-robin
picks one of its ready backends, and the request is forwarded over a keep-alive pool with hop-by-hop headers
stripped and ``X-Forwarded-For/Proto/Host`` set; bodies stream both ways (`proxy_fast`, HTTP/1.1 parsed strictly
by `proxy_http`). If the connection to the backend is refused (nothing was sent yet), or a bodiless idempotent
request's connection closes before any answer (stale in the pool, or the backend died with it), it is retried
once on another ready backend of the revision, else of stable, so a replica restarting never surfaces as a 502.
Mirror routes copy a share of matching requests to the canary without waiting. The hot path avoids work that is
not needed: the routing table is rebuilt only when the state changes, counters are plain integers, nothing is
logged per request.

The admin API changes where all traffic goes, so every endpoint but ``GET /healthz`` needs the instance's token
as ``Authorization: Bearer <token>`` (compared in constant time; otherwise 401 and nothing changes). The token is
read from a file readable by its owner only (``--token-file``) or the ``HEADWAY_PROXY_TOKEN`` environment
variable, never from the command line, which every local user can read in ``ps``. Without one the proxy does
not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import os
import resource
import secrets
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from headway.http_guard import bearer_matches, host_guard
from headway.runtimes.embedded.proxy_balancing import BackendSlot, RoutingTable
from headway.runtimes.embedded.proxy_counters import Counters, CountersCollector
from headway.runtimes.embedded.proxy_fast import HEAD_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, FastDataPlane
from headway.runtimes.embedded.proxy_state import (
    RoutingState,
    StateError,
    load_state,
    parse_backends,
    parse_header_route,
    parse_mirror_route,
    parse_state,
    save_state,
)

log = logging.getLogger("headway.proxy")

MIRROR_BODY_LIMIT = 1024 * 1024
"""A request body is copied to a mirror only up to this size; larger requests are forwarded but not mirrored."""
MIRROR_CONCURRENCY = 64
"""At most this many mirror copies in flight; beyond it copies are dropped so mirroring never builds a backlog."""
TOKEN_ENV = "HEADWAY_PROXY_TOKEN"  # noqa: S105 - a name, not a secret
"""The environment variable a token may come in (when no ``--token-file`` is given)."""
MIN_TOKEN_LENGTH = 16
FILES_PER_CONNECTION = 2
"""A client connection with a request in flight also holds a connection to a backend."""
RESERVED_FILES = 256
"""Open files kept back from client connections: idle backend pools, the admin API, the state file."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Proxy:
    """The routing table, the data plane, the counters and the admin API of one proxied app."""

    def __init__(
        self,
        state: RoutingState | None = None,
        *,
        state_file: Path | None = None,
        token: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 300.0,
        head_timeout: float = HEAD_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """``token`` guards the admin API; None makes a random one (only this process knows it: fail closed)."""
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._fast: FastDataPlane | None = None
        self.state_file = state_file
        self.slots: dict[str, BackendSlot] = {}
        self.counters = Counters()
        self.collector = CountersCollector(self.counters)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.table = RoutingTable(RoutingState(), self.slots)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._admin_runner: web.AppRunner | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._apply(state or RoutingState(), persist=False)

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, listen: tuple[str, int], admin: tuple[str, int]) -> tuple[str, str]:
        """Bind both ports (0 picks a free one) and return the bound ``host:port`` of each."""
        loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(  # for mirrored copies only: they are not on the hot path
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, use_dns_cache=True),
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        self._fast = FastDataPlane(
            self,
            connect_timeout=self.connect_timeout,
            response_timeout=self.read_timeout,
            head_timeout=self.head_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
            mirror_body_limit=MIRROR_BODY_LIMIT,
        )
        data_server = await self._fast.start(listen[0], listen[1])
        self._servers.append(data_server)
        self._admin_runner = web.AppRunner(self.admin_app(), access_log=None)
        await self._admin_runner.setup()
        site = web.TCPSite(self._admin_runner, admin[0], admin[1], reuse_address=True)
        await site.start()
        self.counters.snapshot(loop.time())
        self._ticker = asyncio.create_task(self._tick())
        admin_host, admin_port = self._admin_runner.addresses[0][:2]
        return _bound(data_server), f"{admin_host}:{admin_port}"

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds, then close everything."""
        for server in self._servers:
            server.close()
        if self._fast is not None:
            self._fast.stop_accepting()
        deadline = time.monotonic() + grace
        while any(slot.inflight for slot in self.slots.values()) and time.monotonic() < deadline:  # noqa: ASYNC110 - draining in-flight requests: a counter polled for a bounded grace, no event to wait on
            await asyncio.sleep(0.02)
        if self._fast is not None:
            self._fast.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._mirrors):
            task.cancel()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self.counters.snapshot(loop.time())

    # --- state -----------------------------------------------------------------------------------------------

    def _apply(self, state: RoutingState, *, persist: bool = True) -> None:
        if persist and self.state_file is not None:
            save_state(self.state_file, state)  # persist first: a crash must not lose an acknowledged change
        self.table = RoutingTable(state, self.slots)
        known = {backend.address for backends in state.backends.values() for backend in backends}
        for address in [address for address, slot in self.slots.items() if address not in known and not slot.inflight]:
            del self.slots[address]
        roles = {state.stable: "stable", state.canary: "canary"} if state.stable or state.canary else {}
        self.collector.roles = {revision: role for revision, role in roles.items() if revision}
        self.collector.weights = dict(state.weights)

    @property
    def state(self) -> RoutingState:
        return self.table.state

    def update(self, state: RoutingState) -> None:
        """Swap in a new routing state (already validated) and persist it."""
        self._apply(state)

    # --- mirroring -----------------------------------------------------------------------------------------

    def mirror(self, slot: BackendSlot, method: str, path: str, headers: CIMultiDict[str], body: Any) -> None:
        """Copy a request to ``slot`` in the background (it is not on the hot path)."""
        if len(self._mirrors) >= MIRROR_CONCURRENCY or not isinstance(body, bytes | None):
            return
        task = asyncio.create_task(self._send_mirror(slot, method, path, CIMultiDict(headers), body))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _send_mirror(
        self, slot: BackendSlot, method: str, path: str, headers: CIMultiDict[str], body: bytes | None
    ) -> None:
        """Fire and forget: the response is read and discarded, failures only counted."""
        assert self._session is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        revision = self.state.canary or ""
        counters = self.counters.of(revision) if revision else None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.request(
                method, URL(slot.url + path, encoded=True), headers=headers, data=body, allow_redirects=False
            ) as response:
                await response.read()
        if counters is not None:
            counters.mirrored += 1

    # --- the admin API -------------------------------------------------------------------------------------

    def admin_app(self) -> web.Application:
        # The Host guard first (no DNS rebinding), then the instance's token on everything but /healthz.
        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[host_guard(), self._authorize])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/state", self._get_state)
        app.router.add_put("/state", self._put_state)
        app.router.add_patch("/state", self._patch_state)
        app.router.add_put("/header-routes/{name}", self._put_header_route)
        app.router.add_delete("/header-routes/{name}", self._delete_header_route)
        app.router.add_put("/mirror-routes/{name}", self._put_mirror_route)
        app.router.add_delete("/mirror-routes/{name}", self._delete_mirror_route)
        app.router.add_delete("/routes", self._delete_routes)
        app.router.add_get("/inflight", self._get_inflight)
        app.router.add_get("/counters", self._get_counters)
        app.router.add_get("/metrics", self._get_metrics)
        return app

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every endpoint but liveness needs the token; checked before a handler reads or changes anything."""
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return await handler(request)
        if not bearer_matches(request.headers.get("Authorization", ""), self.token):
            return web.json_response(
                {"error": f"{request.path}: missing or wrong token (Authorization: Bearer <the instance's token>)"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="headway proxy admin"'},
            )
        return await handler(request)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _get_state(self, _: web.Request) -> web.Response:
        return web.json_response(self.state.wire())

    async def _put_state(self, request: web.Request) -> web.Response:
        body = await _json(request)
        return self._change(lambda: parse_state(_require_json(body)))

    async def _patch_state(self, request: web.Request) -> web.Response:
        """Merge top-level keys; ``backends`` merges per revision (null removes one), so writers do not race."""
        raw = await _json(request)

        def merged() -> RoutingState:
            patch = _as_dict(_require_json(raw))
            body = self.state.wire()
            for key, value in patch.items():
                if key == "backends" and isinstance(value, dict):
                    for revision, backends in value.items():
                        if backends is None:
                            body["backends"].pop(revision, None)
                        else:
                            body["backends"][revision] = backends
                else:
                    body[key] = value
            return parse_state(body)

        return self._change(merged)

    async def _put_header_route(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = _require_json(await _json(request))

        def changed() -> RoutingState:
            route = parse_header_route({**_as_dict(body), "name": name}, f"headerRoutes.{name}")
            others = tuple(item for item in self.state.header_routes if item.name != name)
            return _replace(self.state, header_routes=(*others, route))

        return self._change(changed)

    async def _delete_header_route(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        routes = tuple(item for item in self.state.header_routes if item.name != name)
        return self._change(lambda: _replace(self.state, header_routes=routes))

    async def _put_mirror_route(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = _require_json(await _json(request))

        def changed() -> RoutingState:
            route = parse_mirror_route({**_as_dict(body), "name": name}, f"mirrorRoutes.{name}")
            others = tuple(item for item in self.state.mirror_routes if item.name != name)
            return _replace(self.state, mirror_routes=(*others, route))

        return self._change(changed)

    async def _delete_mirror_route(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        routes = tuple(item for item in self.state.mirror_routes if item.name != name)
        return self._change(lambda: _replace(self.state, mirror_routes=routes))

    async def _delete_routes(self, _: web.Request) -> web.Response:
        return self._change(lambda: _replace(self.state, header_routes=(), mirror_routes=()))

    async def _get_inflight(self, _: web.Request) -> web.Response:
        inflight = self.table.inflight()
        for address, slot in self.slots.items():
            inflight.setdefault(address, slot.inflight)
        return web.json_response({"inflight": inflight, "total": sum(inflight.values())})

    async def _get_counters(self, request: web.Request) -> web.Response:
        raw = request.query.get("window")
        try:
            window = None if raw is None else float(raw)
        except ValueError:
            window = -1.0
        if window is not None and not 0 < window <= 86_400:
            return _problem(f"window: expected seconds within (0, 86400], got {raw!r}")
        totals, covered = self.counters.window(asyncio.get_running_loop().time(), window)
        return web.json_response(
            {
                "stable": self.state.stable,
                "canary": self.state.canary,
                "weights": dict(self.state.weights),
                "windowSeconds": round(covered, 3) if window is not None else None,
                "revisions": {revision: total.wire() for revision, total in totals.items()},
            }
        )

    async def _get_metrics(self, _: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def _change(self, build: Callable[[], RoutingState]) -> web.Response:
        try:
            state = build()
        except StateError as error:
            return _problem(str(error))
        try:
            self.update(state)
        except OSError as error:
            return web.json_response({"error": f"cannot save the state file: {error}"}, status=503)
        return web.json_response(state.wire())


# --- helpers -----------------------------------------------------------------------------------------------


async def _json(request: web.Request) -> object:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        return _INVALID


_INVALID = object()


def _require_json(body: object) -> object:
    if body is _INVALID:
        raise _BadJSONError
    return body


class _BadJSONError(StateError):
    def __init__(self) -> None:
        super().__init__("body: expected a JSON document")


def _as_dict(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise StateError("body: expected an object")
    return body


def _replace(state: RoutingState, **changes: Any) -> RoutingState:
    return replace(state, **changes)


def _problem(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _bound(server: Any) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


# --- the process -------------------------------------------------------------------------------------------


def parse_address(value: str, what: str, *, loopback: bool = False) -> tuple[str, int]:
    """``host:port`` → tuple; ``loopback`` refuses any host that is not a loopback address."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{what}: expected host:port (port 0 picks a free one), got {value!r}")
    if loopback and host != "localhost":
        try:
            if not ipaddress.ip_address(host.strip("[]")).is_loopback:
                raise ValueError(f"{what}: the admin API listens on loopback only, got {host!r}")
        except ValueError as error:
            if "loopback" in str(error):
                raise
            raise ValueError(f"{what}: expected an IP address or localhost, got {host!r}") from None
    return host.strip("[]"), int(port)


def read_token(token_file: str | None, environ: Mapping[str, str]) -> str:
    """The admin token from ``token_file`` (its owner's only) or ``HEADWAY_PROXY_TOKEN``; a ValueError if none."""
    if token_file:
        path = Path(token_file)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"--token-file: {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
        token, what = path.read_text().strip(), f"--token-file {path}"
    elif environ.get(TOKEN_ENV):
        token, what = environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        raise ValueError(f"the admin API needs a token: --token-file PATH (mode 600) or the {TOKEN_ENV} variable")
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise ValueError(f"{what}: expected a token of at least {MIN_TOKEN_LENGTH} printable ASCII characters")
    return token


def connection_cap(wanted: int | None) -> int:
    """How many client connections to allow: ``wanted`` (or the default) within the open-file limit.

    The soft limit is raised to the hard one first (raising it is allowed to any process). An explicit cap the
    limit cannot hold is refused, naming the limit, rather than failing on ``accept`` later.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    room = max(1, (soft - RESERVED_FILES) // FILES_PER_CONNECTION)
    if wanted is None:
        return min(MAX_CONNECTIONS, room)
    if wanted > room:
        raise ValueError(
            f"--max-connections: {wanted} needs about {wanted * FILES_PER_CONNECTION + RESERVED_FILES} open files "
            f"but the limit is {soft} (raise it with ulimit -n, or ask for at most {room})"
        )
    return wanted


async def serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT, then drain gracefully."""
    state_file = Path(args.state_file) if args.state_file else None
    state = load_state(state_file) if state_file else RoutingState()
    if args.backends:
        state = _replace(state, backends={**state.backends, "default": parse_backends(args.backends, "--backend")})
        state = _replace(state, stable=state.stable or "default", weights={**state.weights, "default": 100})
    proxy = Proxy(
        state,
        state_file=state_file,
        token=args.token,
        connect_timeout=args.connect_timeout,
        head_timeout=args.head_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )
    listen, admin = await proxy.start(args.listen, args.admin)
    # Everything allocated so far lives as long as the process: keep it out of the collector's generations, and
    # collect young objects less often, so per-request garbage does not trigger frequent full-heap pauses.
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    print(json.dumps({"listen": listen, "admin": admin}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close(grace=args.grace)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m headway.runtimes.embedded.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", default="127.0.0.1:8080", help="data-plane host:port (default 127.0.0.1:8080)")
    parser.add_argument("--admin", default="127.0.0.1:8081", help="admin API host:port, loopback only")
    parser.add_argument("--state-file", help="where routing state is saved and reloaded from")
    parser.add_argument("--backend", dest="backends", action="append", help="host:port of a backend (repeatable)")
    parser.add_argument("--token-file", help=f"the admin API's token, in a file of mode 600 (or env {TOKEN_ENV})")
    parser.add_argument("--connect-timeout", type=float, default=2.0, help="seconds to connect to a backend")
    parser.add_argument(
        "--head-timeout", type=float, default=HEAD_TIMEOUT, help="seconds a client has to send a whole request head"
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=IDLE_TIMEOUT, help="seconds an idle keep-alive client connection lives"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help=f"client connections open at once (default {MAX_CONNECTIONS}, or what the open-file limit allows)",
    )
    parser.add_argument("--grace", type=float, default=10.0, help="seconds in-flight requests get at shutdown")
    args = parser.parse_args(argv)
    try:
        args.listen = parse_address(args.listen, "--listen")
        args.admin = parse_address(args.admin, "--admin", loopback=True)
        for name in ("connect_timeout", "head_timeout", "idle_timeout", "grace"):
            value = getattr(args, name)
            if not 0 <= value <= 86_400 or (value == 0 and name != "grace"):
                raise ValueError(f"--{name.replace('_', '-')}: expected seconds within (0, 86400], got {value}")
        if args.max_connections is not None and args.max_connections < 1:
            raise ValueError(f"--max-connections: expected at least 1, got {args.max_connections}")
        args.max_connections = connection_cap(args.max_connections)
        args.token = read_token(args.token_file, os.environ)
        return asyncio.run(serve(args))
    except (ValueError, OSError) as error:
        print(f"headway proxy: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
