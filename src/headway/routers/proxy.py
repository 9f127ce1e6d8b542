"""The embedded proxy as a traffic router: weights and routes written to its admin API over loopback HTTP.

The engine calls routers synchronously, so this adapter makes short blocking calls with urllib (one request per
method, a few milliseconds on loopback) instead of running an event loop. The proxy applies a change before it
answers, so a weight that reads back is the weight the data plane uses: `read_state` reports it as verified.

The proxy owns backends (the supervisor registers and drains them); this router owns only ``stable``,
``canary``, ``weights`` and the routes, and patches just those keys so the two writers never overwrite each
other. Weights are written as percentages of the two revisions (stable gets ``100 - canary``).

Every call carries the instance's token (``Authorization: Bearer``): the admin API refuses anything else with a
401, which surfaces here as a `PermanentError` naming the missing or wrong token.

"Restore" puts the proxy back to what it is with no rollout in progress: all traffic to stable, no canary, no
routes. Failures become `TemporaryError` (proxy down, timeout, 5xx) or `PermanentError` (the proxy refused the
request as invalid, or no proxy is configured for the rollout).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError, TemporaryError
from headway.core.observation import RouterState
from headway.loopback import DIRECT
from headway.routers import proxy_readback
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch

RETRY_DELAY = 2.0
"""Seconds before retrying when the proxy did not answer (it restarts in well under that)."""


class ProxyAdmin(Protocol):
    """Where the proxies of a mode are administered: what `ProxyRouter` is built on (the embedded runtime's
    proxies, in `headway.engine.modes`)."""

    token: str

    def admin_url(self, rollout: Rollout) -> str:
        """The admin base URL of the proxy serving ``rollout``."""
        ...

    def instance(self, rollout: Rollout) -> str | None:
        """Names the proxy process serving ``rollout`` (None: unknown); a different answer means a new one."""
        ...


class ProxyRouter:
    """Implements `headway.routers.base.TrafficRouter` against the embedded proxy's admin API."""

    type: ClassVar[str] = "proxy"

    def __init__(
        self,
        admin: str | Mapping[str, str] | Callable[[Rollout], str],
        *,
        token: str | None = None,
        timeout: float = 2.0,
        instance_of: Callable[[Rollout], str | None] | None = None,
    ) -> None:
        """``admin`` is the admin base URL (one app), a map from ``namespace/name`` to URL, or a function;
        ``token`` is the proxies' admin token. ``instance_of`` names the proxy process answering for a rollout
        (embedded mode: its PID and start time), so `read_state` can tell a restarted proxy from an edited one;
        None: restarts are not told apart."""
        self._admin = admin
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.instance_of = instance_of
        self._instances: dict[str, str] = {}
        """The last instance seen per rollout."""

    # --- the TrafficRouter Protocol ------------------------------------------------------------------------

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        if not 0 <= canary_weight <= 100:
            raise PermanentError(f"canary weight must be within 0..100, got {canary_weight}")
        self._call(rollout, "PATCH", "/state", proxy_readback.written_split(canary_weight, canary_hash, stable_hash))

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        path = f"/header-routes/{quote(name, safe='')}"
        if match is None:
            self._call(rollout, "DELETE", path)
        else:
            self._call(rollout, "PUT", path, {"match": [item.wire() for item in match]})

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        path = f"/mirror-routes/{quote(name, safe='')}"
        if match is None:
            self._call(rollout, "DELETE", path)
        else:
            self._call(rollout, "PUT", path, {"match": [item.wire() for item in match], "percentage": percentage})

    def remove_managed_routes(self, rollout: Rollout) -> None:
        self._call(rollout, "DELETE", "/routes")

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        state = self._call(rollout, "GET", "/state")
        with _readable(rollout, state):
            read = RouterState(
                canary_weight=proxy_readback.canary_weight(state),
                verified=True,
                drift=proxy_readback.drift_of(state, expected),
                backends=proxy_readback.routed_backends(state),
                stable_hash=state.get("stable"),
            )
        return replace(read, restarted=self._restarted(rollout))

    def _restarted(self, rollout: Rollout) -> str:
        """What replaced the proxy since the last read (once), from `instance_of`; empty when unchanged/unknown."""
        if self.instance_of is None:
            return ""
        seen = self._instances
        key = f"{rollout.metadata.namespace}/{rollout.metadata.name}"
        now, before = self.instance_of(rollout), seen.get(key)
        if now is None:
            return ""
        seen[key] = now
        return f"the proxy of {key} was replaced ({before} → {now})" if before is not None and before != now else ""

    def restore(self, rollout: Rollout) -> None:
        state = self._call(rollout, "GET", "/state")
        stable = state.get("stable")
        self._call(
            rollout,
            "PATCH",
            "/state",
            {"canary": None, "weights": {stable: 100} if stable else {}, "headerRoutes": [], "mirrorRoutes": []},
        )

    # --- HTTP --------------------------------------------------------------------------------------------------

    def admin_url(self, rollout: Rollout) -> str:
        key = f"{rollout.metadata.namespace}/{rollout.metadata.name}"
        if isinstance(self._admin, str):
            return self._admin.rstrip("/")
        if callable(self._admin):
            return self._admin(rollout).rstrip("/")
        url = self._admin.get(key)
        if url is None:
            raise PermanentError(f"no embedded proxy is configured for rollout {key}")
        return url.rstrip("/")

    def _call(self, rollout: Rollout, method: str, path: str, body: object = None) -> dict[str, Any]:
        url = self.admin_url(rollout) + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers)  # noqa: S310 - http(s) only: our own endpoint, or a URL checked at load
        try:
            with DIRECT.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            message = _error_message(error)
            if 400 <= error.code < 500:
                raise PermanentError(f"proxy at {url} refused {method}: {message}") from None
            raise TemporaryError(f"proxy at {url} failed {method}: {message}", delay=RETRY_DELAY) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TemporaryError(f"proxy at {url} did not answer: {reason}", delay=RETRY_DELAY) from None
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError:
            raise TemporaryError(f"proxy at {url} answered {method} with invalid JSON", delay=RETRY_DELAY) from None
        if not isinstance(decoded, dict):
            raise TemporaryError(f"proxy at {url} answered {method} with {type(decoded).__name__}", delay=RETRY_DELAY)
        return decoded


@contextlib.contextmanager
def _readable(rollout: Rollout, state: Mapping[str, Any]) -> Iterator[None]:
    """A ``/state`` document of the wrong shape (a weight that is no number, a list where a map belongs) is the
    adapter's error, named, like an unparsable answer: never a TypeError out of the pass."""
    try:
        yield
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise TemporaryError(
            f"proxy for {rollout.metadata.namespace}/{rollout.metadata.name} answered GET /state with an "
            f"unreadable document ({type(error).__name__}: {error})",
            delay=RETRY_DELAY,
        ) from None


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
    except (json.JSONDecodeError, OSError):
        return f"HTTP {error.code}"
    return str(body.get("error", body)) if isinstance(body, dict) else f"HTTP {error.code}"
