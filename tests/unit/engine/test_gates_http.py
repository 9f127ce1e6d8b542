"""HttpGates against a real HTTP receiver on 127.0.0.1: yes on 2xx, no otherwise, never blocking the caller."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from headway.core.actions import CallGate
from headway.engine.gates import HttpGates
from headway.spec.rollout import Rollout, Webhook
from tests.unit.core.driver import rollout

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Receiver(BaseHTTPRequestHandler):
    answers: dict[str, int] = {}
    bodies: list[dict[str, object]] = []
    delay = 0.0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.bodies.append(body)
        time.sleep(Receiver.delay)
        self.send_response(Receiver.answers.get(self.path, 200))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Receiver.answers, Receiver.bodies, Receiver.delay = {}, [], 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def gate_call(url: str, name: str = "approve", timeout: int = 5) -> CallGate:
    webhook = Webhook(name=name, type="confirm-promotion", url=url, timeout_seconds=timeout, metadata={"team": "a"})
    return CallGate(key=f"{name}/abc", webhook=webhook, hash="abc")


def wait_answer(gates: HttpGates, r: Rollout, key: str) -> None:
    deadline = time.monotonic() + 10
    while not gates.observe(r)[key].answered:
        assert time.monotonic() < deadline, "no answer recorded"
        time.sleep(0.01)


def test_a_2xx_answer_is_a_yes_and_the_payload_is_flagger_shaped(server: str) -> None:
    gates, r = HttpGates(), rollout({"canary": {"steps": []}})
    gates.call(r, gate_call(server + "/ok"), NOW)
    wait_answer(gates, r, "approve/abc")
    state = gates.observe(r)["approve/abc"]
    assert state.passed and state.message == "HTTP 200"
    assert Receiver.bodies == [
        {
            "name": "web",
            "namespace": "default",
            "phase": "Promoting",
            "type": "confirm-promotion",
            "checksum": "abc",
            "metadata": {"team": "a"},
        }
    ]


def test_other_statuses_and_dead_endpoints_are_a_no(server: str) -> None:
    gates, r = HttpGates(), rollout({"canary": {"steps": []}})
    Receiver.answers["/nope"] = 403
    gates.call(r, gate_call(server + "/nope", "a"), NOW)
    gates.call(r, gate_call("http://127.0.0.1:9/closed", "b"), NOW)
    wait_answer(gates, r, "a/abc")
    wait_answer(gates, r, "b/abc")
    states = gates.observe(r)
    assert not states["a/abc"].passed and states["a/abc"].message == "HTTP 403"
    assert not states["b/abc"].passed and "refused" in states["b/abc"].message.lower()


def test_a_slow_gate_never_blocks_the_caller_and_is_not_called_twice(server: str) -> None:
    gates, r = HttpGates(), rollout({"canary": {"steps": []}})
    Receiver.delay = 0.5
    started = time.monotonic()
    gates.call(r, gate_call(server + "/slow"), NOW)
    gates.call(r, gate_call(server + "/slow"), NOW)
    assert time.monotonic() - started < 0.2
    assert not gates.observe(r)["approve/abc"].answered
    wait_answer(gates, r, "approve/abc")
    assert len(Receiver.bodies) == 1
