"""The daemon's HTTP API over real HTTP on 127.0.0.1, with the runner on fake adapters."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from headway.runtimes.embedded.daemon import Daemon, new_token
from tests.unit.runtimes.embedded.world import MANIFEST, World

TOKEN = "s3cret-token"


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str, world: World) -> None:
        self.session = session
        self.url = url
        self.world = world
        self.stopped = False

    async def call(self, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as response:
            return response.status, await response.json()


@pytest_asyncio.fixture
async def api(world: World) -> AsyncIterator[Api]:
    holder: dict[str, Api] = {}

    def stop() -> None:
        holder["api"].stopped = True

    daemon = Daemon(world.runner, token=TOKEN, on_shutdown=stop)
    url = await daemon.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        holder["api"] = Api(session, url, world)
        yield holder["api"]
    await daemon.close()


async def applied(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/apply", data=MANIFEST)
    assert status == 201, body
    await api.world.turns(3)


@pytest.mark.asyncio
async def test_apply_then_list_and_get_show_the_stable_rollout(api: Api) -> None:
    await applied(api)

    status, listing = await api.call("GET", "/api/v1/rollouts", token=None)
    assert status == 200
    [row] = listing["rollouts"]
    assert row["name"] == "web" and row["phase"] == "Healthy" and row["stableImage"] == "web:v1"

    status, detail = await api.call("GET", "/api/v1/rollouts/web", token=None)
    assert status == 200
    assert detail["spec"]["replicas"] == 2
    assert detail["status"]["phase"] == "Healthy"
    assert [(r["number"], r["ready"], r["image"]) for r in detail["revisions"]] == [(1, 2, "web:v1")]
    assert "RolloutCreated" in [e["reason"] for e in detail["events"]]


@pytest.mark.asyncio
async def test_mutations_need_the_token(api: Api) -> None:
    for token in (None, "wrong"):
        status, body = await api.call("POST", "/api/v1/apply", data=MANIFEST, token=token)
        assert status == 401
        assert "token" in body["error"]
    assert api.world.documents.list_documents("Rollout") == []


@pytest.mark.asyncio
async def test_set_image_promote_and_abort_through_the_api(api: Api) -> None:
    await applied(api)

    status, body = await api.call(
        "POST", "/api/v1/rollouts/web/set-image", json={"container": "app", "image": "web:v2"}
    )
    assert status == 200, body
    await api.world.turns(3)
    assert api.world.router.route("default/web").canary_weight == 20

    status, body = await api.call("POST", "/api/v1/rollouts/web/abort")
    assert status == 200, body
    await api.world.turns(3)
    status, body = await api.call("GET", "/api/v1/rollouts/web")
    assert body["aborted"] and body["phase"] == "Degraded"


@pytest.mark.asyncio
async def test_a_new_spec_is_progressing_until_a_pass_has_seen_it(api: Api) -> None:
    await applied(api)
    _, before = await api.call("GET", "/api/v1/rollouts/web")
    assert before["phase"] == "Healthy"
    assert before["status"]["observedGeneration"] == "1"

    # An apply is stored without a pass (a command runs one before answering): read before any pass ran, the
    # stored status (Healthy, generation 1) must not be shown as current.
    status, body = await api.call("POST", "/api/v1/apply", data=MANIFEST.replace("web:v1", "web:v2"))
    assert status == 201, body
    _, body = await api.call("GET", "/api/v1/rollouts/web")
    assert (body["phase"], body["message"]) == (
        "Progressing",
        "waiting for the controller to observe generation 2 (status is for 1)",
    )
    await api.world.turns(3)
    _, after = await api.call("GET", "/api/v1/rollouts/web")
    assert after["status"]["observedGeneration"] == "2" and after["phase"] != "Healthy"


@pytest.mark.asyncio
async def test_bad_requests_get_clear_errors(api: Api) -> None:
    await applied(api)

    cases = [
        ("/api/v1/rollouts/nope/abort", {}, 404, "rollout 'nope' not found"),
        ("/api/v1/rollouts/web/explode", {}, 404, "unknown command 'explode'"),
        ("/api/v1/rollouts/web/promote", {"full": "yes"}, 400, "full: expected true or false"),
        ("/api/v1/rollouts/web/promote", {"fast": True}, 400, "unknown option(s) fast"),
        ("/api/v1/rollouts/web/undo", {"toRevision": 0}, 400, "toRevision: expected a revision number"),
        ("/api/v1/rollouts/web/set-image", {"container": "app"}, 400, "image: expected a non-empty string"),
        ("/api/v1/rollouts/web/abort", {}, 409, "nothing to abort"),
    ]
    for path, body, code, message in cases:
        status, answer = await api.call("POST", path, json=body)
        assert (status, message in answer["error"]) == (code, True), (path, answer)

    status, answer = await api.call("POST", "/api/v1/apply", data="kind: Rollout\nspec: [")
    assert status == 400
    assert answer["problems"] and "<request>" in answer["problems"][0]

    deep = "[" * 100_000  # nested deeper than the JSON decoder recurses
    status, answer = await api.call("POST", "/api/v1/rollouts/web/promote", data=deep)
    assert (status, answer["error"].startswith("request body: not JSON")) == (400, True), answer


@pytest.mark.asyncio
async def test_watch_returns_as_soon_as_something_happens(api: Api) -> None:
    after = api.world.runner.sequence
    watch = asyncio.create_task(api.call("GET", f"/api/v1/watch?after={after}&timeout=10", token=None))
    await asyncio.sleep(0.05)
    assert not watch.done()

    status, _ = await api.call("POST", "/api/v1/apply", data=MANIFEST)  # no loop turn: the apply itself is news
    assert status == 201

    status, body = await asyncio.wait_for(watch, timeout=5)
    assert status == 200
    assert body["sequence"] > after
    assert body["events"][0]["reason"] == "Applied"


@pytest.mark.asyncio
async def test_the_event_stream_sends_server_sent_events(api: Api) -> None:
    assert api.world.runner.sequence == 0
    async with api.session.get(api.url + "/api/v1/events?after=0") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        status, _ = await api.call("POST", "/api/v1/apply", data=MANIFEST)
        assert status == 201
        frame = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout=5)
    lines = frame.decode().splitlines()
    assert lines[:2] == ["id: 1", "event: rollout"]
    assert json.loads(lines[2].removeprefix("data: "))["reason"] == "Applied"


@pytest.mark.asyncio
async def test_closing_does_not_wait_for_an_open_event_stream(world: World) -> None:
    daemon = Daemon(world.runner, token=TOKEN)
    url = await daemon.start()
    async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/events") as response:
        assert response.status == 200
        started = time.monotonic()
        await asyncio.wait_for(daemon.close(), timeout=10)
    assert time.monotonic() - started < 5


@pytest.mark.asyncio
async def test_shutdown_calls_back(api: Api) -> None:
    status, _ = await api.call("POST", "/api/v1/shutdown")
    await asyncio.sleep(0.01)
    assert status == 202 and api.stopped


def test_the_token_file_is_private(tmp_path: Path) -> None:
    token = new_token(tmp_path)

    path = tmp_path / "token"
    assert path.read_text() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new_token(tmp_path) != token


@pytest.mark.asyncio
async def test_a_token_that_is_not_utf8_is_refused_like_a_wrong_one(api: Api) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/apply HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"token" in answer.partition(b"\r\n\r\n")[2]
