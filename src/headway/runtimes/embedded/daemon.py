"""The embedded runtime's local HTTP API: what the CLI (and later the dashboard) talk to.

It listens on 127.0.0.1 only and speaks JSON. Reads are open to local users; every mutation needs the bearer
token written to ``<state_dir>/token`` (mode 0600) when the daemon starts, which the CLI reads and sends
automatically: on a shared machine, only the user who owns the state directory can move a rollout.

Routes (all under ``/api/v1``):

- ``GET rollouts``: one summary per rollout; ``GET rollouts/{name}``: spec, status, revisions, analysis runs,
  experiments and recent events.
- ``POST apply`` (body: YAML, one or more documents): store manifests, all or nothing; ``?onlyNew=true`` leaves
  objects already stored as they are.
- ``POST rollouts/{name}/{verb}`` with a JSON body of options, verb one of ``promote`` (``full``), ``abort``,
  ``retry``, ``pause``, ``resume``, ``restart``, ``undo`` (``toRevision``), ``set-image`` (``container``,
  ``image``).
- ``GET watch?after=SEQ&timeout=S``: long-poll for events after ``SEQ``; ``GET events``: the same as Server-Sent
  Events, for browsers.
- ``POST shutdown``: stop the runtime (``headway down``).

The web dashboard, when given, is mounted under ``/dashboard/`` with the same token for its actions, and a
read-only one (every action refused, whatever the token) under ``/dashboard-read-only/``.

A request whose ``Host`` is not a loopback name (or the address it arrived on) is refused with 421 before any
route runs (`headway.http_guard`): a web page cannot read the API through DNS rebinding.

Every error is a JSON ``{"error": message}`` with a status that says whose fault it is (400 bad input, 401 no
token, 404 unknown rollout, 409 not applicable now); a handler never answers with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from headway.core.hashing import pod_template_hash
from headway.dashboard.model import observed_phase
from headway.http_guard import bearer_matches, host_guard
from headway.runtimes.embedded.gitsync import COMMIT_ANNOTATION as GIT_COMMIT_ANNOTATION
from headway.runtimes.embedded.runner import CommandError, Runner
from headway.runtimes.embedded.state_files import DASHBOARD, READ_ONLY_DASHBOARD, TOKEN_FILE
from headway.spec import names
from headway.spec.load import SpecError
from headway.spec.rollout import Rollout, rollout_key
from headway.stores.base import ConflictError

log = logging.getLogger(__name__)

VERBS = ("promote", "abort", "retry", "pause", "resume", "restart", "undo", "set-image")
MAX_WATCH_SECONDS = 60.0
RECENT_EVENTS = 50
SHUTDOWN_SECONDS = 1.0
"""How long open requests (an event stream, a long poll) may delay a shutdown: `headway down` must not hang."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token(state_dir: Path) -> str:
    """A fresh random token in ``<state_dir>/token``, readable by its owner only (created 0600, never widened)."""
    token = secrets.token_urlsafe(32)
    path = state_dir / TOKEN_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)
    return token


class Daemon:
    """The HTTP API over a `Runner`; ``on_shutdown`` is called when a client asks the runtime to stop."""

    def __init__(
        self,
        runner: Runner,
        *,
        token: str,
        on_shutdown: Callable[[], None] | None = None,
        describe: Callable[[Rollout], Mapping[str, Any]] | None = None,
        dashboard: web.Application | None = None,
        read_only_dashboard: web.Application | None = None,
    ) -> None:
        self.runner = runner
        self.token = token
        self.on_shutdown = on_shutdown
        self.describe = describe
        """Mode-specific fields added to every rollout view (embedded: where the app's traffic enters)."""
        self.dashboard = dashboard
        """The web dashboard (`headway.dashboard.app.create_app` over this runner), served under ``/dashboard/``."""
        self.read_only_dashboard = read_only_dashboard
        """The same dashboard with every action refused, under `READ_ONLY_DASHBOARD` (``headway dashboard
        --read-only``): a link to it carries no token and its page can only watch."""
        self._site_runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[host_guard(), self._errors], client_max_size=4 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/healthz", self._health),
                web.get("/api/v1/rollouts", self._list),
                web.get("/api/v1/rollouts/{name}", self._get),
                web.post("/api/v1/apply", self._apply),
                web.post("/api/v1/rollouts/{name}/{verb}", self._command),
                web.get("/api/v1/watch", self._watch),
                web.get("/api/v1/events", self._events),
                web.post("/api/v1/shutdown", self._shutdown),
            ]
        )
        if self.dashboard is not None:
            app.add_subapp(DASHBOARD, self.dashboard)
        if self.read_only_dashboard is not None:
            app.add_subapp(READ_ONLY_DASHBOARD, self.read_only_dashboard)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: an ephemeral port) and return the base URL."""
        self._site_runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._site_runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
        await web.SockSite(self._site_runner, sock).start()
        return f"http://{host}:{sock.getsockname()[1]}"

    async def close(self) -> None:
        if self._site_runner is not None:
            await self._site_runner.cleanup()
            self._site_runner = None

    # --- middleware ------------------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET" and not self._authorized(request):
            return _error(401, f"{request.path}: missing or wrong token (the CLI reads it from the state directory)")
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except SpecError as error:
            problems = [problem.render() for problem in error.problems]
            return web.json_response({"error": "invalid manifest", "problems": problems}, status=400)
        except CommandError as error:
            return _error(error.status, str(error))
        except ConflictError as error:
            return _error(409, f"{error}; try again")
        except Exception as error:  # the API must answer, never drop the connection with a traceback
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, f"internal error: {type(error).__name__}: {error}")

    def _authorized(self, request: web.Request) -> bool:
        return bearer_matches(request.headers.get("Authorization", ""), self.token)

    # --- handlers --------------------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "sequence": self.runner.sequence})

    async def _list(self, request: web.Request) -> web.Response:
        rows = [{**summary(self.runner, r), **self._extra(r)} for r in self.runner.rollouts().values()]
        return web.json_response({"rollouts": rows})

    async def _get(self, request: web.Request) -> web.Response:
        rollout = self.runner.rollout(_name(request))
        return web.json_response({**detail(self.runner, rollout), **self._extra(rollout)})

    def _extra(self, rollout: Rollout) -> Mapping[str, Any]:
        return self.describe(rollout) if self.describe is not None else {}

    async def _apply(self, request: web.Request) -> web.Response:
        text = await request.text()
        name = request.query.get("file", "<request>")
        applied = await self.runner.apply(text, name, only_new=request.query.get("onlyNew") == "true")
        self.runner.wake()
        return web.json_response({"applied": applied}, status=201)

    async def _command(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        if verb not in VERBS:
            raise CommandError(f"unknown command {verb!r} (known: {', '.join(VERBS)})", status=404)
        name = _name(request)
        options = await _json_body(request)
        await self.runner.act(name, verb, **_options(verb, options))
        rollout = self.runner.rollout(name)
        return web.json_response({**detail(self.runner, rollout), **self._extra(rollout)})

    async def _watch(self, request: web.Request) -> web.Response:
        after = _int_query(request, "after", default=self.runner.sequence)
        timeout = min(float(_int_query(request, "timeout", default=25)), MAX_WATCH_SECONDS)
        sequence = await self.runner.wait_for_change(after, timeout)
        rollout = request.query.get("rollout")
        events = [event.as_dict() for event in self.runner.events_after(after, rollout)]
        return web.json_response({"sequence": sequence, "events": events})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        after = _int_query(request, "after", default=self.runner.sequence)
        while True:
            sequence = await self.runner.wait_for_change(after, 15.0)
            events = self.runner.events_after(after)
            frames = [f"id: {e.seq}\nevent: rollout\ndata: {json.dumps(e.as_dict())}\n\n" for e in events]
            await response.write(("".join(frames) or ": keep-alive\n\n").encode())
            after = sequence

    async def _shutdown(self, request: web.Request) -> web.Response:
        if self.on_shutdown is not None:
            asyncio.get_running_loop().call_soon(self.on_shutdown)
        return web.json_response({"stopping": True}, status=202)


# --- views -----------------------------------------------------------------------------------------------------


def summary(runner: Runner, rollout: Rollout) -> dict[str, Any]:
    """One line's worth of a rollout: phase, step, weight, and which image is stable and which is rolling out."""
    status = runner.status(rollout)
    canary = rollout.spec.strategy.canary
    weights = status.canary.weights
    templates = {pod_template_hash(t): t for t in runner.revision_templates(rollout).values()}
    templates[pod_template_hash(rollout.spec.template)] = rollout.spec.template or {}
    phase, message = observed_phase(
        status.phase.value if status.phase is not None else None,
        status.message,
        rollout.metadata.generation,
        status.observed_generation,
    )
    return {
        "name": rollout.name,
        "namespace": rollout.metadata.namespace,
        "strategy": "canary" if canary is not None else "blueGreen",
        "phase": phase,
        "message": message,
        "paused": rollout.spec.paused,
        "aborted": status.abort,
        "step": status.current_step_index,
        "steps": len(canary.steps) if canary is not None else None,
        "canaryWeight": weights.canary.weight if weights is not None else 0,
        "stableHash": status.stable_rs,
        "currentHash": status.current_pod_hash,
        "stableImage": _image(templates.get(status.stable_rs or "")),
        "currentImage": _image(rollout.spec.template),
        "replicas": rollout.spec.replicas_or_default(),
        "readyReplicas": status.ready_replicas,
        "gitCommit": rollout.metadata.annotations.get(GIT_COMMIT_ANNOTATION),
    }


def detail(runner: Runner, rollout: Rollout) -> dict[str, Any]:
    """Everything about one rollout: the `summary` plus spec, status, revisions, runs and recent events."""
    engine = runner.engine
    key = rollout_key(rollout)
    templates = runner.revision_templates(rollout)
    images = {pod_template_hash(t): _image(t) for t in templates.values()}
    images[pod_template_hash(rollout.spec.template)] = _image(rollout.spec.template)
    revisions = [
        {**vars(state), "image": images.get(state.hash)}
        for state in sorted(engine.platform.revisions(rollout).values(), key=lambda r: r.number)
    ]
    analysis_runs, experiments = engine.runs.observe(rollout)
    events = runner.events_after(0, key)[-RECENT_EVENTS:]
    return {
        **summary(runner, rollout),
        "spec": rollout.wire()["spec"],
        "status": runner.status(rollout).model_dump(by_alias=True, mode="json", exclude_none=True),
        "revisions": revisions,
        "analysisRuns": [_run(state) for state in analysis_runs.values()],
        "experiments": [_run(state) for state in experiments.values()],
        "events": [event.as_dict() for event in events],
    }


def _run(state: Any) -> dict[str, str]:
    return {"name": state.name, "phase": str(state.phase), "message": state.message}


def _image(template: Mapping[str, Any] | None) -> str | None:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return str(containers[0].get("image")) if containers and containers[0].get("image") is not None else None


# --- request helpers -------------------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the decoder goes
        raise CommandError(f"request body: not JSON ({error})", status=400) from None
    if not isinstance(body, dict):
        raise CommandError("request body: expected a JSON object", status=400)
    return body


def _options(verb: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The command's options from the request body, checked and renamed; unknown keys are refused by name."""
    allowed = {"promote": {"full"}, "undo": {"toRevision"}, "set-image": {"container", "image"}}.get(verb, set())
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise CommandError(f"{verb}: unknown option(s) {', '.join(unknown)}", status=400)
    options: dict[str, Any] = {}
    if "full" in body:
        if not isinstance(body["full"], bool):
            raise CommandError("full: expected true or false", status=400)
        options["full"] = body["full"]
    if "toRevision" in body:
        value = body["toRevision"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CommandError("toRevision: expected a revision number (1 or more)", status=400)
        options["to_revision"] = value
    if verb == "set-image":
        for field in ("container", "image"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise CommandError(f"{field}: expected a non-empty string", status=400)
            options[field] = body[field]
    return options


def _name(request: web.Request) -> str:
    """The route's rollout, ``NAME`` or ``NAMESPACE/NAME`` (its ``/`` sent as ``%2F``), checked as Kubernetes checks
    names: a name that is not one is refused (400) before it can address anything."""
    try:
        names.check_key(request.match_info["name"], "rollout name")
    except names.InvalidNameError as error:
        raise CommandError(str(error), status=400) from None
    return request.match_info["name"]


def _int_query(request: web.Request, name: str, *, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise CommandError(f"{name}: expected an integer, got {raw!r}", status=400) from None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
