"""The web provider: one HTTP request per measurement; the JSON answer (or a jsonPath into it) is ``result``.

Follows Argo Rollouts' web metric: GET, POST or PUT, headers, ``body`` (sent as written) or ``jsonBody`` (sent
as JSON with ``Content-Type: application/json``), ``timeoutSeconds`` (default 10), ``insecure`` (skip TLS
verification), and ``jsonPath`` in the Kubernetes JSONPath template syntax Argo uses (``{$.data.ok}``).

A non-2xx answer is an error result naming the status. An answer that is not JSON is still a value when the
jsonPath is the whole document (``{$}``): a number is parsed (``0.97`` → 0.97), anything else is the text, so a
health endpoint that answers ``ok`` can be checked with ``result == "ok"``.

Supported jsonPath subset (anything else is an error naming the path, never a silent mismatch): the root
``{$}``, fields ``{$.a.b}`` or ``{.a.b}`` or ``{$['a-b']}``, indices ``{$.a[0].b}`` (negative counts from
the end) and wildcards ``{$.items[*].x}``. One match is the matched value itself, with its JSON type (so
``result == true`` and ``result.ok && result.successPercent >= 0.9`` work as in Argo's docs). A path with a
wildcard is always a list, even with one match; Argo returns a lone match unwrapped, which makes
``all(result, ...)`` break on a one-element page, so this is a deliberate difference. No match is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric, WebMetric, has_placeholder

DEFAULT_TIMEOUT = 10.0
"""Seconds when ``timeoutSeconds`` is 0 or unset (Argo's default)."""

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""A larger answer is refused rather than read into memory."""

WILDCARD = "*"

_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z_][\w-]*)|\[(?P<index>-?\d+)\]|\[(?P<star>\*)\]|\.(?P<dotstar>\*)|\[\s*(?P<q>['"])(?P<key>.*?)(?P=q)\s*\]"""
)


class JsonPathError(ValueError):
    """A jsonPath outside the supported subset, or one that matches nothing."""


def parse_json_path(template: str) -> list[str | int]:
    """The steps of a ``{$.a[0].b}`` template: field names (str), indices (int) and `WILDCARD`.

    Raises JsonPathError naming the unsupported part (filters, slices, recursive descent, several templates).
    """
    text = template.strip()
    if not (text.startswith("{") and text.endswith("}")) or text.count("{") != 1:
        raise JsonPathError(f"jsonPath {template!r} must be one template in braces, like {{$.data.value}}")
    path = text[1:-1].strip()
    if path.startswith("$"):
        path = path[1:]
    steps: list[str | int] = []
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            rest = path[position:]
            raise JsonPathError(f"jsonPath {template!r}: {rest!r} is not supported (use .field, ['field'], [0] or [*])")
        if match["name"] is not None:
            steps.append(match["name"])
        elif match["index"] is not None:
            steps.append(int(match["index"]))
        elif match["star"] is not None or match["dotstar"] is not None:
            steps.append(WILDCARD)
        else:
            steps.append(match["key"])
        position = match.end()
    return steps


def apply_json_path(document: Any, steps: Sequence[str | int], template: str) -> Any:
    """The value at `steps`; a list when a wildcard is involved. Raises JsonPathError when nothing matches."""
    matches: list[Any] = [document]
    for step in steps:
        found: list[Any] = []
        for node in matches:
            if step == WILDCARD:
                if isinstance(node, list):
                    found.extend(node)
                elif isinstance(node, dict):
                    found.extend(node.values())
            elif isinstance(step, int):
                if isinstance(node, list) and -len(node) <= step < len(node):
                    found.append(node[step])
            elif isinstance(node, dict) and step in node:
                found.append(node[step])
        matches = found
    if WILDCARD in steps:
        return matches
    if not matches:
        raise JsonPathError(f"jsonPath {template} matched nothing in the response")
    return matches[0]


class WebProvider:
    """Calls the metric's URL; finishes in `start`."""

    type: ClassVar[str] = "web"

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        """Make the request and return the (jsonPath-selected) answer, or an error naming the cause."""
        spec = metric.provider.web
        if spec is None:
            return ProviderResult(error=f"metric {metric.name!r} has no web provider block")
        try:
            steps = parse_json_path(spec.json_path)
        except JsonPathError as error:
            return ProviderResult(error=str(error))
        problem = _check_url(spec.url)
        if problem:
            return ProviderResult(error=problem)
        timeout = float(spec.timeout_seconds) if spec.timeout_seconds else DEFAULT_TIMEOUT
        try:
            status, content_type, body = await _call(spec, timeout)
        except TimeoutError:
            return ProviderResult(error=f"{spec.method} {spec.url} did not answer within {timeout:g}s (timeoutSeconds)")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return ProviderResult(error=f"{spec.method} {spec.url} failed: {str(error) or type(error).__name__}")
        metadata = {"status": str(status)}
        if not 200 <= status < 300:
            return ProviderResult(
                error=f"received non 2xx response code: {status} from {spec.url}: {_snippet(body)}", metadata=metadata
            )
        return _select(body, content_type, steps, spec.json_path, metadata)

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        """Web measurements finish in `start`; there is nothing to poll."""
        return ProviderResult(error=f"web: unknown pending measurement {pending!r} (requests finish at once)")

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Nothing runs in the background; idempotent no-op."""


def _check_url(url: str) -> str | None:
    if has_placeholder(url):
        return f"web url has an unresolved placeholder: {url!r}"
    try:
        parsed = URL(url.strip())
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return f"web url {url!r} is not an http(s) URL (provider.web.url)"
    return None


async def _call(spec: WebMetric, timeout: float) -> tuple[int, str, bytes]:  # noqa: ASYNC109 - the caller's time budget for this one call
    headers = {header.key: header.value for header in spec.headers}
    data: str | bytes | None = spec.body
    if spec.json_body is not None:
        data = json.dumps(spec.json_body).encode()
        if not any(key.lower() == "content-type" for key in headers):
            headers["Content-Type"] = "application/json"
    connector = aiohttp.TCPConnector(ssl=not spec.insecure)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.request(spec.method, URL(spec.url.strip()), headers=headers, data=data) as response,
    ):
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ValueError(f"the answer is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return response.status, response.content_type, b"".join(chunks)


def _select(
    body: bytes, content_type: str, steps: list[str | int], template: str, metadata: dict[str, str]
) -> ProviderResult:
    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        if steps:
            return ProviderResult(
                error=f"jsonPath {template} needs a JSON answer, got {content_type or 'no content type'}: "
                f"{_snippet(body)}",
                metadata=metadata,
            )
        return ProviderResult(value=_plain(text), metadata=metadata)
    try:
        return ProviderResult(value=apply_json_path(document, steps, template), metadata=metadata)
    except JsonPathError as error:
        return ProviderResult(error=str(error), metadata=metadata)


def _plain(text: str) -> float | str:
    """A plain-text answer: a number if it reads as one, else the stripped text."""
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        return stripped


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"
