"""Gate webhooks for the shell: call them off the reconcile path and report their last answers.

`decide` emits `CallGate`; `HttpGates.call` starts the HTTP POST on a small thread pool and returns at once,
so a slow endpoint never stalls a pass; `observe` reports the answers (and calls still in flight) as
`GateState`s for the next pass. The payload follows Flagger's webhook shape (name, namespace, phase, checksum,
metadata) so existing gate services work. A 2xx answer is a yes; any other status, a timeout or a connection
error is a no, with the reason in the message.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol

from headway.core.actions import CallGate
from headway.core.observation import GateState
from headway.spec.rollout import Rollout

_PHASES = {
    "confirm-rollout": "Waiting",
    "pre-rollout": "Progressing",
    "confirm-promotion": "Promoting",
    "rollback": "Progressing",
}


class GateBackend(Protocol):
    def call(self, rollout: Rollout, gate: CallGate, now: datetime) -> None:
        """Start asking the gate; returns at once; a call already in flight for the same key is not repeated."""
        ...

    def observe(self, rollout: Rollout) -> Mapping[str, GateState]:
        """The last answer (or the call in flight) per gate key of ``rollout``."""
        ...


class HttpGates:
    """Calls gate webhooks over HTTP on a thread pool (the engine itself stays synchronous and quick)."""

    def __init__(self, *, workers: int = 4, post: Callable[[str, bytes, float], int] | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="headway-gates")
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], GateState] = {}
        self._post = post or _post

    def call(self, rollout: Rollout, gate: CallGate, now: datetime) -> None:
        owner = f"{rollout.metadata.namespace}/{rollout.name}"
        with self._lock:
            current = self._states.get((owner, gate.key))
            if current is not None and not current.answered:
                return
            self._states[(owner, gate.key)] = GateState(key=gate.key, passed=False, asked_at=now, answered=False)
        payload = {
            "name": rollout.name,
            "namespace": rollout.metadata.namespace,
            "phase": _PHASES[gate.webhook.type],
            "type": gate.webhook.type,
            "checksum": gate.hash,
            "metadata": gate.webhook.metadata,
        }
        self._pool.submit(self._ask, owner, gate, now, json.dumps(payload).encode())

    def _ask(self, owner: str, gate: CallGate, asked_at: datetime, body: bytes) -> None:
        try:
            status = self._post(gate.webhook.url, body, float(gate.webhook.timeout_seconds))
            passed, message = 200 <= status < 300, f"HTTP {status}"
        except (OSError, ValueError) as error:  # URLError, timeouts and refused connections are OSErrors
            passed, message = False, f"{type(error).__name__}: {error}"
        with self._lock:
            self._states[(owner, gate.key)] = GateState(
                key=gate.key, passed=passed, asked_at=asked_at, message=message, answered=True
            )

    def observe(self, rollout: Rollout) -> Mapping[str, GateState]:
        owner = f"{rollout.metadata.namespace}/{rollout.name}"
        with self._lock:
            return {key: state for (who, key), state in self._states.items() if who == owner}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})  # noqa: S310 - http(s) only: our own endpoint, or a URL checked at load
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only: our own endpoint, or a URL checked at load
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
