"""The dashboard: an aiohttp sub-application over a `RolloutSource`, mountable by the daemon or served alone.

Pages are one static HTML file and one script (no build, no CDN); the script reads the JSON API and listens to
server-sent events on ``/api/events``. Argo Rollouts' dashboard has no authentication; this one does:

- Mutations (``POST /api/rollouts/{namespace}/{name}/{action}``) need ``Authorization: Bearer <token>``. A token
  is generated when none is given (read it from ``app[TOKEN]`` to show the user); ``read_only`` refuses every
  mutation whatever the token.
- Reads are open to loopback peers only; any other peer must present the token for reads too.
- Every request must name this server in ``Host`` (a loopback name, the address it arrived on, or one of
  ``allowed_hosts``), so a web page cannot read it through DNS rebinding (`headway.http_guard`: 421).

Errors are JSON ``{"error": …}`` with a status that says what to do: 401 (send the token), 403 (read-only, or not
loopback), 404 (no such rollout), 409 (the action does not apply now), 400 (bad request), 503 (the source, e.g. the
cluster, cannot be reached: the message says what to check).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from headway.dashboard.model import (
    Action,
    ActionRefusedError,
    ChangeEvent,
    RolloutNotFoundError,
    SourceUnavailableError,
)
from headway.dashboard.source import RolloutSource
from headway.http_guard import bearer_matches, host_guard
from headway.spec import names

SOURCE: web.AppKey[RolloutSource] = web.AppKey("headway_dashboard_source", RolloutSource)
TOKEN: web.AppKey[str | None] = web.AppKey("headway_dashboard_token", str)
READ_ONLY: web.AppKey[bool] = web.AppKey("headway_dashboard_read_only", bool)
HEARTBEAT: web.AppKey[float] = web.AppKey("headway_dashboard_heartbeat", float)

STATIC = Path(str(resources.files("headway.dashboard") / "static"))
PHASES = ("Healthy", "Progressing", "Paused", "Degraded")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    source: RolloutSource,
    *,
    token: str | None = None,
    read_only: bool = False,
    heartbeat_seconds: float = 15.0,
    allowed_hosts: Iterable[str] = (),
) -> web.Application:
    """The dashboard over ``source``. Mount it with ``parent.add_subapp("/dashboard/", app)`` or serve it alone.

    ``allowed_hosts``: names besides the loopback ones that a request's ``Host`` may carry (`headway.http_guard`)."""
    app = web.Application(middlewares=[host_guard(allowed_hosts), _errors, _guard])
    app[SOURCE] = source
    app[TOKEN] = None if read_only else (token or secrets.token_urlsafe(24))
    app[READ_ONLY] = read_only
    app[HEARTBEAT] = heartbeat_seconds
    app.router.add_get("/", _page, name="index")
    app.router.add_get("/rollouts/{namespace}/{name}", _page)
    app.router.add_static("/static/", STATIC, name="static")
    app.router.add_get("/api/rollouts", _list)
    app.router.add_get("/api/rollouts/{namespace}/{name}", _get)
    app.router.add_post("/api/rollouts/{namespace}/{name}/{action}", _act)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/whoami", _whoami)
    return app


def token_of(app: web.Application) -> str | None:
    """The token mutations need (None in read-only mode), to print for the user."""
    return app[TOKEN]


# --- guards ------------------------------------------------------------------------------------------------------


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RolloutNotFoundError as missing:
        return _error(404, str(missing))
    except ActionRefusedError as refused:
        return _error(409, str(refused))
    except SourceUnavailableError as unavailable:
        return _error(503, str(unavailable))
    except names.InvalidNameError as invalid:
        return _error(400, str(invalid))


def _token_ok(request: web.Request) -> bool:
    expected = request.app[TOKEN]
    return expected is not None and bearer_matches(request.headers.get("Authorization", ""), expected)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    mutation = request.method not in ("GET", "HEAD", "OPTIONS")
    if mutation:
        if request.app[READ_ONLY]:
            return _error(403, "the dashboard is read-only: actions are disabled (restart it without --read-only)")
        if not _token_ok(request):
            return web.json_response(
                {"error": "actions need the dashboard token: send 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="headway"'},
            )
    elif not _loopback(request) and not _token_ok(request):
        return _error(403, "reads are open to loopback clients only; send 'Authorization: Bearer <token>'")
    return await handler(request)


# --- pages and API -----------------------------------------------------------------------------------------------


async def _page(request: web.Request) -> web.Response:
    base = str(request.app.router["index"].url_for())
    html = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{BASE}}", base)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _list(request: web.Request) -> web.Response:
    views = await request.app[SOURCE].list_rollouts()
    counts = dict.fromkeys(PHASES, 0)
    for view in views:
        phase = view.phase or "Unknown"
        counts[phase] = counts.get(phase, 0) + 1
    return web.json_response({"rollouts": [view.summary().wire() for view in views], "counts": counts})


def _target(request: web.Request) -> tuple[str, str]:
    """The route's (name, namespace), checked as Kubernetes checks them; `InvalidNameError` (400) otherwise."""
    name, namespace = request.match_info["name"], request.match_info["namespace"]
    names.check_namespace(namespace, "namespace")
    names.check_name(name, "rollout name")
    return name, namespace


async def _get(request: web.Request) -> web.Response:
    view = await request.app[SOURCE].get_rollout(*_target(request))
    return web.json_response(view.wire())


async def _act(request: web.Request) -> web.Response:
    name, namespace = _target(request)
    try:
        action = Action(request.match_info["action"])
    except ValueError:
        known = ", ".join(a.value for a in Action)
        return _error(400, f"unknown action {request.match_info['action']!r} (known: {known})")
    args: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except json.JSONDecodeError as error:
            return _error(400, f"the body is not JSON: {error}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object of action arguments")
        args = body
    result = await request.app[SOURCE].act(name, namespace, action, args)
    return web.json_response(result.wire())


async def _whoami(request: web.Request) -> web.Response:
    """What the page may do: lets it hide buttons in read-only mode and say whether its token is right."""
    return web.json_response({"readOnly": request.app[READ_ONLY], "tokenValid": _token_ok(request)})


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``change`` event per `ChangeEvent`, a comment line as heartbeat."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n: connected\n\n")
    changes = request.app[SOURCE].subscribe()
    try:
        async for frame in _frames(changes, request.app[HEARTBEAT]):
            await response.write(frame)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await changes.aclose()  # type: ignore[attr-defined]
    return response


async def _frames(changes: AsyncIterator[ChangeEvent], heartbeat: float) -> AsyncIterator[bytes]:
    pending: asyncio.Task[ChangeEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(changes))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield b": heartbeat\n\n"
                continue
            change = pending.result()
            pending = None
            yield f"event: change\ndata: {json.dumps(change.wire())}\n\n".encode()
    finally:
        if pending is not None:
            pending.cancel()
