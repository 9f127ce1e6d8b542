"""The web provider: requests as Argo's web metric makes them, answers as conditions read them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.web import JsonPathError, WebProvider, apply_json_path, parse_json_path
from headway.spec.analysis import Metric
from tests.unit.providers.servers import serve

CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC))
DOCUMENT = {
    "data": {"ok": True, "successPercent": 0.95, "error-rate": 0.01},
    "items": [{"x": 1}, {"x": 2}, {"y": 3}],
    "one": [{"x": 7}],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("{$}", DOCUMENT, id="root"),
        pytest.param("{$.data.ok}", True, id="field"),
        pytest.param("{.data.successPercent}", 0.95, id="no-dollar"),
        pytest.param("{$.data['error-rate']}", 0.01, id="quoted-key"),
        pytest.param("{$.items[1].x}", 2, id="index"),
        pytest.param("{$.items[-1].y}", 3, id="negative-index"),
        pytest.param("{$.items[*].x}", [1, 2], id="wildcard-skips-missing"),
        pytest.param("{$.one[*].x}", [7], id="wildcard-with-one-match-is-a-list"),
        pytest.param("{$.data}", DOCUMENT["data"], id="object"),
        pytest.param(" { $.data.ok } ", True, id="spaces"),
    ],
)
def test_json_path_subset(path: str, expected: object) -> None:
    assert apply_json_path(DOCUMENT, parse_json_path(path), path) == expected


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("$.data.ok", id="no-braces"),
        pytest.param("{$.items[?(@.x==1)]}", id="filter"),
        pytest.param("{$.items[0:2]}", id="slice"),
        pytest.param("{$..x}", id="recursive-descent"),
        pytest.param("{.a} {.b}", id="two-templates"),
        pytest.param("{range .items[*]}{.x}{end}", id="range"),
    ],
)
def test_unsupported_json_paths_are_named(path: str) -> None:
    with pytest.raises(JsonPathError, match="jsonPath"):
        parse_json_path(path)


@pytest.mark.parametrize("path", ["{$.data.missing}", "{$.items[9]}", "{$.data.ok.deeper}"])
def test_a_path_that_matches_nothing_is_an_error(path: str) -> None:
    with pytest.raises(JsonPathError, match="matched nothing"):
        apply_json_path(DOCUMENT, parse_json_path(path), path)


seen: list[dict[str, Any]] = []


async def echo(request: web.Request) -> web.Response:
    """Answers the document, recording what was asked."""
    seen.append(
        {
            "method": request.method,
            "headers": dict(request.headers),
            "body": await request.text(),
            "query": dict(request.query),
        }
    )
    return web.json_response(DOCUMENT)


async def plain(request: web.Request) -> web.Response:
    return web.Response(text=request.query.get("say", "0.97\n"))


async def failing(_: web.Request) -> web.Response:
    return web.Response(status=503, text="upstream down")


async def slow(_: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({})


@pytest_asyncio.fixture
async def base() -> AsyncIterator[str]:
    seen.clear()
    routes = [("*", "/echo", echo), ("GET", "/plain", plain), ("GET", "/fail", failing), ("GET", "/slow", slow)]
    async with serve(routes) as url:
        yield url


def metric(**web_fields: Any) -> Metric:
    return Metric.model_validate({"name": "w", "provider": {"web": web_fields}})


async def measure(**web_fields: Any) -> ProviderResult:
    return await WebProvider().start(metric(**web_fields), CONTEXT)


@pytest.mark.asyncio
async def test_get_with_headers_and_json_path(base: str) -> None:
    headers = [{"key": "Authorization", "value": "Bearer abc"}]

    result = await measure(url=f"{base}/echo?service=web", headers=headers, jsonPath="{$.data.ok}")

    assert result.value is True
    assert seen[0]["method"] == "GET"
    assert seen[0]["headers"]["Authorization"] == "Bearer abc"
    assert seen[0]["query"] == {"service": "web"}


@pytest.mark.asyncio
async def test_whole_document_by_default(base: str) -> None:
    result = await measure(url=f"{base}/echo")

    assert result.value == DOCUMENT


@pytest.mark.asyncio
async def test_post_sends_the_body_as_written(base: str) -> None:
    headers = [{"key": "Content-Type", "value": "text/plain"}]

    result = await measure(url=f"{base}/echo", method="POST", body="hello", headers=headers, jsonPath="{$.data}")

    assert result.value == DOCUMENT["data"]
    assert (seen[0]["method"], seen[0]["body"], seen[0]["headers"]["Content-Type"]) == ("POST", "hello", "text/plain")


@pytest.mark.asyncio
async def test_put_with_json_body_sets_the_content_type(base: str) -> None:
    result = await measure(url=f"{base}/echo", method="PUT", jsonBody={"key": [1, "two"]}, jsonPath="{$.items[*].x}")

    assert result.value == [1, 2]
    assert seen[0]["method"] == "PUT"
    assert json.loads(seen[0]["body"]) == {"key": [1, "two"]}
    assert seen[0]["headers"]["Content-Type"] == "application/json"


@pytest.mark.asyncio
@pytest.mark.parametrize(("say", "expected"), [("0.97\n", 0.97), ("42", 42), ("ok", "ok"), (" all good ", "all good")])
async def test_plain_text_answers_are_numbers_or_text(base: str, say: str, expected: object) -> None:
    result = await measure(url=f"{base}/plain?say={say}")

    assert result.value == expected


@pytest.mark.asyncio
async def test_plain_text_with_a_json_path_is_an_error(base: str) -> None:
    result = await measure(url=f"{base}/plain?say=ok", jsonPath="{$.status}")

    assert result.error is not None
    assert "needs a JSON answer" in result.error


@pytest.mark.asyncio
async def test_non_2xx_is_an_error_with_the_status(base: str) -> None:
    result = await measure(url=f"{base}/fail")

    assert result.value is None
    assert result.error is not None
    assert "503" in result.error
    assert "upstream down" in result.error
    assert result.metadata["status"] == "503"


@pytest.mark.asyncio
async def test_timeout_seconds_bounds_the_request(base: str) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()

    result = await measure(url=f"{base}/slow", timeoutSeconds=1)

    assert result.error is not None
    assert "timeoutSeconds" in result.error
    assert loop.time() - began < 4


@pytest.mark.asyncio
async def test_a_json_path_that_matches_nothing_is_an_error(base: str) -> None:
    result = await measure(url=f"{base}/echo", jsonPath="{$.data.nope}")

    assert result.error == "jsonPath {$.data.nope} matched nothing in the response"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not an http(s) URL"),
        ("ftp://example.com/x", "is not an http(s) URL"),
        ("http://127.0.0.1:{{args.port}}/x", "unresolved placeholder"),
    ],
)
async def test_bad_urls_are_errors(url: str, message: str) -> None:
    result = await measure(url=url)

    assert result.error is not None
    assert message in result.error


@pytest.mark.asyncio
async def test_a_refused_connection_is_an_error() -> None:
    async with serve([]) as gone:
        pass

    result = await measure(url=f"{gone}/echo")

    assert result.error is not None
    assert "failed" in result.error
