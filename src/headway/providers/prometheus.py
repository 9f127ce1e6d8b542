"""The Prometheus provider: one PromQL query per measurement, over Prometheus' HTTP API, with aiohttp.

What the query returns becomes ``result`` for the conditions, as in Argo Rollouts:

- an instant vector is a list of floats in the order Prometheus returned the series (``result[0]`` is the
  usual first sample); an empty vector is ``[]`` (see below);
- a scalar is a float; a string is a string;
- a range query (``rangeQuery``) returns a matrix, flattened into one list of floats, series after series,
  each in time order, so ``all(result, {# < 1000})`` checks every point, as Argo's range-query docs advise;
- ``NaN``, ``+Inf`` and ``-Inf`` are kept as floats: conditions test them with ``isNaN``.

An empty vector is data, not a failed query: Argo passes ``[]`` to the conditions, and templates written for it
guard with ``len(result) > 0 && ...`` (an error counter with no errors has no series). The measurement's
metadata then says ``query returned no data``, so a condition that indexes ``result[0]`` fails with a message
that points at the cause. Transport failures, non-2xx answers and ``status: error`` are error results carrying
Prometheus' own message; nothing raises.

Fields beyond the committed spec model, read as Argo writes them (the spec keeps unknown fields):
``rangeQuery: {start, end, step}`` where start/end are ``now()``, ``now() - duration("5m")``, an RFC 3339
time or a Unix timestamp, ``authentication.basicAuth: {username, password}`` and ``caCert`` (PEM). OAuth2
client credentials fetch a token per measurement (intervals are minutes; no cache to go stale); SigV4 is not
supported and says so. Without ``address`` the provider's default address is used (Argo reads it from
``ARGO_ROLLOUTS_PROMETHEUS_ADDRESS``; `from_environment` reads that or ``HEADWAY_PROMETHEUS_ADDRESS``).

Queries are evaluated at the pass's clock reading (``context.now``), not at the moment the request leaves, so a
measurement is reproducible and tests can query fixed data.
"""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric, PrometheusMetric, has_placeholder
from headway.spec.base import parse_duration

DEFAULT_TIMEOUT = 30.0
"""Seconds a query may take when the metric sets no ``timeout`` (Argo's default)."""

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""A larger answer is refused: a query that returns that much is a mistake, not a measurement."""

RESOLVED_QUERY = "ResolvedPrometheusQuery"
"""Metadata key of the query as sent (Argo's key, so dashboards written for Argo find it)."""

NO_DATA = "query returned no data"

ADDRESS_VARIABLES = ("HEADWAY_PROMETHEUS_ADDRESS", "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS")

_RELATIVE = re.compile(r"""^now\(\)\s*(?:([-+])\s*duration\(\s*["']([^"']+)["']\s*\))?$""")


class QueryError(Exception):
    """A measurement that cannot be taken; its message becomes the result's error."""


@dataclass(frozen=True)
class RangeQuery:
    """Absolute bounds and step of a range query, resolved against the pass's clock."""

    start: datetime
    end: datetime
    step: float


class PrometheusProvider:
    """Runs the metric's PromQL query; finishes in `start`."""

    type: ClassVar[str] = "prometheus"

    def __init__(self, *, default_address: str | None = None) -> None:
        self.default_address = default_address

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> PrometheusProvider:
        """A provider whose default address comes from the first of `ADDRESS_VARIABLES` that is set."""
        address = next((environ[name] for name in ADDRESS_VARIABLES if environ.get(name)), None)
        return cls(default_address=address)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        """Query Prometheus and return the mapped result, or an error naming what went wrong."""
        spec = metric.provider.prometheus
        if spec is None:
            return ProviderResult(error=f"metric {metric.name!r} has no prometheus provider block")
        metadata = {RESOLVED_QUERY: spec.query}
        try:
            value, extra = await self._measure(spec, context)
        except QueryError as error:
            return ProviderResult(error=str(error), metadata=metadata)
        return ProviderResult(value=value, metadata={**metadata, **extra})

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        """Prometheus measurements finish in `start`; there is nothing to poll."""
        return ProviderResult(error=f"prometheus: unknown pending measurement {pending!r} (queries finish at once)")

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Nothing runs in the background; idempotent no-op."""

    async def _measure(self, spec: PrometheusMetric, context: MeasureContext) -> tuple[Any, dict[str, str]]:
        if has_placeholder(spec.query):
            raise QueryError(f"prometheus query has an unresolved placeholder: {spec.query.strip()!r}")
        base = self._address(spec)
        timeout = float(spec.timeout) if spec.timeout else DEFAULT_TIMEOUT
        raw_range = spec.range_query.wire() if spec.range_query is not None else None
        range_query = _range_query(raw_range, _utc(context.now))
        if range_query is None:
            endpoint = "query"
            form = {"query": spec.query, "time": _stamp(_utc(context.now))}
        else:
            endpoint = "query_range"
            form = {
                "query": spec.query,
                "start": _stamp(range_query.start),
                "end": _stamp(range_query.end),
                "step": repr(range_query.step),
            }
        form["timeout"] = f"{timeout:g}s"
        connector = aiohttp.TCPConnector(ssl=_ssl_context(spec, spec.ca_cert))
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
                headers = await _credentials(session, spec)
                status, body = await _post_with_get_fallback(session, base / "api/v1" / endpoint, form, headers)
        except TimeoutError:
            raise QueryError(f"prometheus at {base} did not answer within {timeout:g}s (timeout)") from None
        except aiohttp.ClientError as error:
            raise QueryError(f"cannot reach prometheus at {base}: {_describe(error)}") from None
        except OSError as error:
            raise QueryError(f"cannot reach prometheus at {base}: {error}") from None
        return _decode(status, body)

    def _address(self, spec: PrometheusMetric) -> URL:
        address = spec.address or self.default_address
        if not address:
            raise QueryError("prometheus address is not configured (set provider.prometheus.address)")
        if has_placeholder(address):
            raise QueryError(f"prometheus address has an unresolved placeholder: {address!r}")
        try:
            url = URL(address.strip())
        except (ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise QueryError(f"prometheus address {address!r} is not an http(s) URL (provider.prometheus.address)")
        return url


async def _post_with_get_fallback(
    session: aiohttp.ClientSession,
    url: URL,
    form: dict[str, str],
    headers: dict[str, str],
) -> tuple[int, bytes]:
    """POST the form (long queries do not fit a URL); servers that refuse POST get a GET, as client_golang does."""
    status, body = await _request(session, "POST", url, headers=headers, data=form)
    if status in (405, 501):
        status, body = await _request(session, "GET", url.with_query(form), headers=headers)
    return status, body


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    headers: dict[str, str],
    data: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    async with session.request(method, url, headers=headers, data=data) as response:
        return response.status, await _read_limited(response)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise QueryError(f"prometheus answer is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _credentials(session: aiohttp.ClientSession, spec: PrometheusMetric) -> dict[str, str]:
    """Headers to send: the metric's headers, then the Authorization that ``authentication`` adds."""
    headers = {header.key: header.value for header in spec.headers}
    authentication = spec.authentication
    if authentication is None:
        return headers
    if authentication.sigv4 is not None:
        raise QueryError("prometheus authentication.sigv4 is not supported by headway (use oauth2, basicAuth)")
    basic = authentication.basic_auth
    if basic is not None:
        headers["Authorization"] = aiohttp.BasicAuth(basic.username, basic.password).encode()
    elif authentication.oauth2 is not None:
        headers["Authorization"] = f"Bearer {await _oauth2_token(session, spec)}"
    return headers


async def _oauth2_token(session: aiohttp.ClientSession, spec: PrometheusMetric) -> str:
    """An access token from the OAuth2 client-credentials flow (RFC 6749 §4.4)."""
    oauth2 = spec.authentication.oauth2 if spec.authentication else None
    if oauth2 is None or not oauth2.token_url:
        raise QueryError("prometheus authentication.oauth2 needs a tokenUrl")
    form = {"grant_type": "client_credentials"}
    if oauth2.client_id:
        form["client_id"] = oauth2.client_id
    if oauth2.client_secret:
        form["client_secret"] = oauth2.client_secret
    if oauth2.scopes:
        form["scope"] = " ".join(oauth2.scopes)
    async with session.post(oauth2.token_url, data=form) as response:
        body = await _read_limited(response)
        if not 200 <= response.status < 300:
            raise QueryError(f"oauth2 token endpoint answered {response.status}: {_snippet(body)}")
    try:
        token = json.loads(body)["access_token"]
    except (ValueError, KeyError, TypeError):
        raise QueryError(f"oauth2 token endpoint answered without an access_token: {_snippet(body)}") from None
    if not isinstance(token, str) or not token:
        raise QueryError("oauth2 token endpoint answered an empty access_token")
    return token


def _ssl_context(spec: PrometheusMetric, ca_cert: object) -> ssl.SSLContext | bool:
    if spec.insecure:
        return False
    if not ca_cert:
        return True
    if not isinstance(ca_cert, str):
        raise QueryError("prometheus caCert must be a PEM string")
    try:
        return ssl.create_default_context(cadata=ca_cert)
    except (ssl.SSLError, ValueError) as error:
        raise QueryError(f"prometheus caCert is not a usable PEM certificate bundle: {error}") from None


def _decode(status: int, body: bytes) -> tuple[Any, dict[str, str]]:
    """Turn Prometheus' JSON envelope into a value and metadata, or raise QueryError with its message."""
    try:
        envelope = json.loads(body)
    except ValueError:
        raise QueryError(f"prometheus answered {status} with a body that is not JSON: {_snippet(body)}") from None
    if not isinstance(envelope, dict):
        raise QueryError(f"prometheus answered {status} with unexpected JSON: {_snippet(body)}")
    if envelope.get("status") != "success" or not 200 <= status < 300:
        kind = envelope.get("errorType") or "error"
        message = envelope.get("error") or _snippet(body)
        raise QueryError(f"prometheus answered {status} ({kind}): {message}")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise QueryError(f"prometheus answered without data: {_snippet(body)}")
    metadata: dict[str, str] = {"resultType": str(data.get("resultType"))}
    warnings = envelope.get("warnings")
    if warnings:
        metadata["warnings"] = "; ".join(str(warning) for warning in warnings)
    value = _result(data.get("resultType"), data.get("result"))
    if isinstance(value, list):
        metadata["series"] = str(len(data.get("result") or []))
        if not value:
            metadata["message"] = NO_DATA
    return value, metadata


def _result(result_type: object, result: Any) -> Any:
    try:
        if result_type == "scalar":
            return _sample(result)
        if result_type == "string":
            return str(result[1])
        if result_type == "vector":
            return [_sample(series["value"]) for series in result]
        if result_type == "matrix":
            return [_sample(point) for series in result for point in series["values"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise QueryError(f"prometheus answered a malformed {result_type} result") from None
    raise QueryError(f"prometheus result type {result_type!r} is not supported")


def _sample(pair: Any) -> float:
    """A ``[timestamp, "value"]`` pair's value; "NaN" and "+Inf" become float NaN and infinity."""
    return float(pair[1])


def _range_query(raw: object, now: datetime) -> RangeQuery | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise QueryError("prometheus rangeQuery must be an object with start, end and step")
    start = _instant(raw.get("start"), now, "start")
    end = _instant(raw.get("end", "now()"), now, "end")
    if end < start:
        raise QueryError(f"prometheus rangeQuery.end ({end.isoformat()}) is before start ({start.isoformat()})")
    try:
        step = parse_duration(raw.get("step"))
    except ValueError as error:
        raise QueryError(f"prometheus rangeQuery.step: {error}") from None
    if step <= 0:
        raise QueryError("prometheus rangeQuery.step must be positive")
    return RangeQuery(start=start, end=end, step=step)


def _instant(raw: object, now: datetime, field: str) -> datetime:
    """A range bound: ``now()``, ``now() - duration("5m")``, an RFC 3339 time or a Unix timestamp."""
    hint = 'use now(), now() - duration("5m"), an RFC 3339 time or a Unix timestamp'
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if not isinstance(raw, str) or not raw.strip():
        raise QueryError(f"prometheus rangeQuery.{field} is missing ({hint})")
    text = raw.strip()
    match = _RELATIVE.match(text)
    if match:
        sign, duration = match.groups()
        if not duration:
            return now
        try:
            offset = timedelta(seconds=parse_duration(duration))
        except ValueError as error:
            raise QueryError(f"prometheus rangeQuery.{field}: {error}") from None
        return now - offset if sign == "-" else now + offset
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        raise QueryError(f"prometheus rangeQuery.{field}: cannot read {text!r} ({hint})") from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _stamp(moment: datetime) -> str:
    seconds = moment.timestamp()
    return repr(seconds) if math.isfinite(seconds) else "0"


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(error: aiohttp.ClientError) -> str:
    return str(error) or type(error).__name__
