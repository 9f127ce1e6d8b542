"""The proxy's admin API requires the instance's token, over real HTTP against real proxy processes.

One unauthenticated ``PATCH /state`` with no backends used to send every request to a 503. Now every endpoint but
``GET /healthz`` answers 401 without the right Bearer token, and nothing changes. The token reaches the proxy in a
0600 file or an environment variable, never on its command line, and every Headway client sends it.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headway.core.errors import PermanentError
from headway.providers.base import MeasureContext
from headway.providers.proxy import ProxyProvider
from headway.routers.proxy import ProxyRouter
from headway.runtimes.embedded.analysis import RolloutProxyProvider
from headway.runtimes.embedded.proxies import Proxies
from headway.spec.analysis import Metric
from headway.spec.rollout import rollout_key
from tests.e2e.proxy.processes import TOKEN, Running, call, proxy, spawn
from tests.scenarios.harness import canary

ROLLOUT = canary(routed=True)
CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC))
EMPTYING: dict[str, object] = {"backends": {"old": [], "new": []}}
"""The write that used to take all traffic down."""

ENDPOINTS = [
    ("GET", "/state", None),
    ("PUT", "/state", {"stable": "x", "weights": {"x": 100}}),
    ("PATCH", "/state", EMPTYING),
    ("PUT", "/header-routes/qa", {"match": [{"headerName": "X-A", "headerValue": {"exact": "1"}}]}),
    ("DELETE", "/header-routes/qa", None),
    ("PUT", "/mirror-routes/m", {"match": [{"method": {"exact": "GET"}}], "percentage": 100}),
    ("DELETE", "/mirror-routes/m", None),
    ("DELETE", "/routes", None),
    ("GET", "/inflight", None),
    ("GET", "/counters", None),
    ("GET", "/metrics", None),
    ("GET", "/no-such-endpoint", None),
]


@pytest.mark.parametrize(
    "token",
    [None, "wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x", ""],
    ids=["none", "wrong", "prefix", "longer", "empty"],
)
def test_every_admin_endpoint_refuses_a_missing_or_wrong_token_and_changes_nothing(
    running_proxy: Running, token: str | None
) -> None:
    before = call("GET", running_proxy.admin + "/state")[1]

    answers = {
        (method, path): call(method, running_proxy.admin + path, body, token=token) for method, path, body in ENDPOINTS
    }

    assert {key: status for key, (status, _) in answers.items()} == dict.fromkeys(answers, 401)
    assert all("missing or wrong token" in body["error"] for _, body in answers.values())
    assert call("GET", running_proxy.admin + "/state")[1] == before
    assert asyncio.run(_get_status(running_proxy)) == 200  # traffic still flows: the emptying PATCH did not apply


def test_other_schemes_and_a_token_in_the_url_are_refused(running_proxy: Running) -> None:
    for header in (f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN, f"Bearer{TOKEN}"):
        request = urllib.request.Request(running_proxy.admin + "/state", headers={"Authorization": header})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401, header
    assert call("GET", f"{running_proxy.admin}/state?token={TOKEN}", token=None)[0] == 401


def test_liveness_needs_no_token_and_the_right_token_opens_everything(running_proxy: Running) -> None:
    assert call("GET", running_proxy.admin + "/healthz", token=None) == (200, {"ok": True})
    assert {call(method, running_proxy.admin + path, body)[0] for method, path, body in ENDPOINTS[:-1]} == {200}


async def _get_status(running: Running) -> int:
    host, port = running.listen.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return int(head[9:12])


# --- how the token reaches the proxy ---------------------------------------------------------------------------


def _token_file(tmp_path: Path, mode: int, text: str = TOKEN) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_of_its_owner_only_is_read(tmp_path: Path) -> None:
    path = _token_file(tmp_path, 0o600)
    running = proxy(None, "--token-file", str(path), token="not-this-one-but-the-file-0123456789")
    try:
        assert call("GET", running.admin + "/state")[0] == 200
        assert TOKEN not in Path(f"/proc/{running.process.pid}/cmdline").read_text()
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("mode", "text", "env", "message"),
    [
        (0o644, TOKEN, None, "readable by others"),
        (0o640, TOKEN, None, "readable by others"),
        (0o600, "short", None, "at least 16"),
        (None, None, None, "needs a token"),
        (None, None, "short", "at least 16"),
    ],
    ids=["world-readable-file", "group-readable-file", "short-file-token", "no-token", "short-env-token"],
)
def test_the_proxy_does_not_start_without_a_usable_token(
    tmp_path: Path, mode: int | None, text: str | None, env: str | None, message: str
) -> None:
    args = ["headway.runtimes.embedded.proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    if mode is not None and text is not None:
        args += ["--token-file", str(_token_file(tmp_path, mode, text))]
    environ = {"HEADWAY_PROXY_TOKEN": env or ""}

    with pytest.raises(RuntimeError, match=message):
        spawn(args, timeout=15, env=environ)


# --- every Headway client sends it -----------------------------------------------------------------------------


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Proxies]:
    started = Proxies(tmp_path / "state")
    yield started
    started.stop_all(grace=2)


def test_proxies_keep_the_token_in_a_0600_file_and_off_the_command_line(proxies: Proxies) -> None:
    process = proxies.ensure(ROLLOUT)

    assert stat.S_IMODE(proxies.token_file.stat().st_mode) == 0o600
    assert proxies.token_file.read_text() == proxies.token and len(proxies.token) >= 32
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert proxies.token.encode() not in b" ".join(cmdline)
    assert proxies.token not in os.environ.get("HEADWAY_PROXY_TOKEN", "")
    assert call("GET", process.admin_url + "/state", token=None)[0] == 401
    assert call("GET", process.admin_url + "/state", token=proxies.token)[0] == 200


def test_the_bootstrap_clients_drive_the_proxy_with_the_token(proxies: Proxies, backends: dict[str, Running]) -> None:
    proxies.sync(ROLLOUT, {"old": [("127.0.0.1", backends["v1a"].port)], "new": [("127.0.0.1", backends["v2"].port)]})
    router = ProxyRouter(proxies.admin_url, token=proxies.token)
    router.set_weight(ROLLOUT, 30, "new", "old")
    proxies.route_active(ROLLOUT, "new")

    state = call("GET", proxies.ensure(ROLLOUT).admin_url + "/state", token=proxies.token)[1]
    assert state["stable"] == "new" and state["weights"] == {"new": 100}
    assert set(state["backends"]) == {"old", "new"}
    with pytest.raises(PermanentError, match="missing or wrong token"):
        ProxyRouter(proxies.admin_url).read_state(ROLLOUT, None)
    with pytest.raises(PermanentError, match="missing or wrong token"):
        ProxyRouter(proxies.admin_url, token="wrong-token-0123456789abcdef").set_weight(ROLLOUT, 0, "new", "old")
    assert call("GET", proxies.ensure(ROLLOUT).admin_url + "/state", token=proxies.token)[1] == state


def test_the_admin_clients_ignore_an_http_proxy_in_the_environment(
    proxies: Proxies, backends: dict[str, Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``http_proxy`` is common on developer machines; urllib honours it even for 127.0.0.1."""
    seen: list[tuple[str, str | None]] = []

    class Recording(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer()

        def do_PATCH(self) -> None:
            self.answer()

        def answer(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(502)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{recorder.server_port}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        proxies.sync(ROLLOUT, {"old": [("127.0.0.1", backends["v1a"].port)]})
        router = ProxyRouter(proxies.admin_url, token=proxies.token)
        router.set_weight(ROLLOUT, 0, None, "old")
        assert router.read_state(ROLLOUT, None).backends == {"old": 1}
    finally:
        recorder.shutdown()
        recorder.server_close()
    assert seen == []


@pytest.mark.asyncio
async def test_the_counters_provider_sends_the_token_only_to_loopback(proxies: Proxies) -> None:
    process = await asyncio.to_thread(proxies.ensure, ROLLOUT)
    metric = Metric.model_validate({"name": "errors", "provider": {"plugin": {"proxy": {}}}})

    owned = RolloutProxyProvider(proxies, lambda _run: rollout_key(ROLLOUT))
    measured = await owned.start(metric, CONTEXT)
    anonymous = await ProxyProvider(default_address=process.admin_url).start(metric, CONTEXT)

    assert measured.error is None, measured.error
    assert anonymous.error is not None and "401" in anonymous.error
    assert not ProxyProvider(token="t" * 32).headers_for("http://192.0.2.1:8081")
    assert ProxyProvider(token="t" * 32).headers_for("http://localhost:8081")


def test_stop_all_stops_the_proxies_and_forgets_the_token(proxies: Proxies) -> None:
    process = proxies.ensure(ROLLOUT)
    first = proxies.token

    proxies.stop_all(grace=2)

    assert not proxies.token_file.exists()
    assert not Path(f"/proc/{process.pid}").exists() or "Z" in Path(f"/proc/{process.pid}/stat").read_text().split()[2]
    again = Proxies(proxies.dir.parent)
    assert again.token != first
