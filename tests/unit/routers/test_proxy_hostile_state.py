"""The proxy router on a ``/state`` document of the wrong shape: its own error (an `AdapterError` the shell turns
into RouterUnreadable), never a TypeError out of the pass. Served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import AdapterError
from headway.routers.proxy import ProxyRouter
from tests.scenarios.harness import canary


class StateServer:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(owner.state).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[StateServer]:
    served = StateServer()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        thread.join(10)


EXPECTED = ExpectedRouting(canary_weight=20, canary_hash="new", stable_hash="old")


@pytest.mark.parametrize(
    "state",
    [
        {"stable": "old", "canary": "new", "weights": {"old": "80", "new": 20}},
        {"stable": "old", "canary": "new", "weights": ["old", "new"]},
        {"stable": ["old"], "canary": "new", "weights": {"old": 80, "new": 20}},
        {"stable": "old", "canary": "new", "weights": {"old": 80, "new": 20}, "backends": {"old": 3}},
    ],
    ids=["text-weight", "weights-list", "unhashable-stable", "backends-not-lists"],
)
def test_a_state_of_the_wrong_shape_is_an_adapter_error(proxy: StateServer, state: dict[str, Any]) -> None:
    proxy.state = state
    router = ProxyRouter(proxy.url)

    with pytest.raises(AdapterError, match="unreadable document"):
        router.read_state(canary(routed=True), EXPECTED)


def test_a_well_formed_state_reads_back(proxy: StateServer) -> None:
    proxy.state = {"stable": "old", "canary": "new", "weights": {"old": 80, "new": 20}}

    state = ProxyRouter(proxy.url).read_state(canary(routed=True), EXPECTED)

    assert state.canary_weight == 20 and state.verified is True and state.drift == ()
