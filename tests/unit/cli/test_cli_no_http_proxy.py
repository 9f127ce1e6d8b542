"""The CLI talks to the embedded daemon on loopback directly: never through the environment's ``http_proxy``
(urllib honours it even for 127.0.0.1), which would break every command and hand the API token to the proxy."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.cli.embedded import Api
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, TOKEN_FILE


def _serve(answer: dict[str, object], seen: list[str]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    started: list[http.server.ThreadingHTTPServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def test_the_cli_reaches_the_daemon_directly_with_a_proxy_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: list[http.server.ThreadingHTTPServer]
) -> None:
    daemon_seen: list[str] = []
    proxy_seen: list[str] = []
    daemon = _serve({"pid": os.getpid(), "rollouts": []}, daemon_seen)
    proxy = _serve({"pid": os.getpid(), "from": "the proxy"}, proxy_seen)
    servers += [daemon, proxy]
    (tmp_path / ENDPOINT_FILE).write_text(
        json.dumps({"url": f"http://127.0.0.1:{daemon.server_port}", "pid": os.getpid()})
    )
    (tmp_path / TOKEN_FILE).write_text("t0ken")
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    answer = Api(tmp_path).get("/api/v1/rollouts")

    assert answer == {"pid": os.getpid(), "rollouts": []}
    assert daemon_seen == ["/healthz", "/api/v1/rollouts"]
    assert proxy_seen == []
