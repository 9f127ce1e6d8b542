"""The ``proxy`` metric provider: the embedded proxy's own per-revision request counters, no Prometheus needed.

A metric selects it as an Argo plugin block::

    provider:
      plugin:
        proxy:
          address: http://127.0.0.1:8081   # the proxy's admin API (optional when the runtime configured one)
          window: 60s                      # counts over the last minute (default); omit for "since start"
          latencyCut: 500ms                # a request slower than this is a bad event (default 1s)

The value is what the statistical judge reduces every signal to, counts of bad events per revision in the same
window, plus rates for simple conditions (``result.canary.errorRate < 0.05``)::

    {"canary": {"revision": "...", "requests": 812, "errors": 3, "slow": 9, "errorRate": 0.0037, "slowRate": ...},
     "stable": {...}, "windowSeconds": 60.0, "latencyCut": 0.5}

A revision with no requests has ``errorRate``/``slowRate`` null, never 0: no data is no evidence, so a condition
on it cannot pass by accident. The latency cut is rounded up to the proxy's next histogram bound (reported as
``latencyCut``). Failed queries are results with ``error`` set, never exceptions.

The counters are behind the proxy's admin token. The runtime that configured the provider gives it the token, and
it is sent only to loopback addresses (where the embedded proxies listen), so a metric naming some other address
cannot collect it.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric

DEFAULT_WINDOW = 60.0
DEFAULT_LATENCY_CUT = 1.0
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ProxyProvider:
    """Implements `headway.providers.base.MetricProvider` over the proxy's ``GET /counters`` admin endpoint."""

    type: ClassVar[str] = "proxy"

    def __init__(self, default_address: str | None = None, *, token: str | None = None, timeout: float = 2.0) -> None:
        self.default_address = default_address
        self.token = token
        self.timeout = timeout

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        try:
            address, window, cut = self._config(metric)
        except ValueError as error:
            return ProviderResult(error=f"metric {metric.name!r}: provider.plugin.proxy.{error}")
        query = {} if window is None else {"window": repr(window)}
        headers = self.headers_for(address)
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{address.rstrip('/')}/counters", params=query, headers=headers) as response,
            ):
                body = await response.json(content_type=None)
                if response.status != 200:
                    message = body.get("error") if isinstance(body, dict) else None
                    return ProviderResult(error=f"proxy at {address} answered {response.status}: {message}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return ProviderResult(error=f"proxy at {address} did not answer: {error or type(error).__name__}")
        try:
            return ProviderResult(value=summarise(body, cut), metadata={"address": address})
        except (KeyError, TypeError, ValueError) as error:
            return ProviderResult(error=f"proxy at {address} sent unexpected counters: {error!r}")

    def headers_for(self, address: str) -> dict[str, str]:
        """The admin token for a loopback address (where embedded proxies listen), else nothing."""
        return {"Authorization": f"Bearer {self.token}"} if self.token and is_loopback(address) else {}

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        return ProviderResult(error="the proxy provider finishes in start; there is nothing to poll")

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Nothing runs between passes."""

    def _config(self, metric: Metric) -> tuple[str, float | None, float]:
        config = (metric.provider.plugin or {}).get(self.type) or {}
        if not isinstance(config, Mapping):
            raise ValueError(f"expected an object, got {type(config).__name__}")
        unknown = sorted(set(config) - {"address", "window", "latencyCut"})
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (allowed: address, window, latencyCut)")
        address = config.get("address") or self.default_address
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise ValueError(f"address: expected the proxy's admin URL (http://host:port), got {address!r}")
        window = config.get("window", DEFAULT_WINDOW)
        return (
            address,
            None if window is None else duration(window, "window"),
            duration(config.get("latencyCut", DEFAULT_LATENCY_CUT), "latencyCut"),
        )


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine's loopback interface (``localhost`` or a loopback IP)."""
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def duration(value: object, field: str) -> float:
    """Seconds from a number or ``"500ms"``/``"30s"``/``"2m"``/``"1h"``; positive, or a `ValueError` naming it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match["number"]) * _UNITS[match["unit"]]
    else:
        raise ValueError(f"{field}: expected a duration such as 30s, 500ms or a number of seconds, got {value!r}")
    if not 0 < seconds <= 86_400:
        raise ValueError(f"{field}: expected a duration within (0, 24h], got {value!r}")
    return seconds


def summarise(counters: Mapping[str, Any], cut: float) -> dict[str, Any]:
    """Reduce the proxy's counters JSON to per-role counts of bad events (errors, requests slower than ``cut``)."""
    revisions: Mapping[str, Any] = counters["revisions"]
    bounds = [float(bound) for bound, _ in next(iter(revisions.values()), {"buckets": []})["buckets"][:-1]]
    index = bisect_left(bounds, cut)
    applied = bounds[index] if index < len(bounds) else None
    result: dict[str, Any] = {"windowSeconds": counters.get("windowSeconds"), "latencyCut": applied}
    for role in ("canary", "stable"):
        revision = counters.get(role)
        entry = revisions.get(revision) if revision else None
        result[role] = None if revision is None else _stats(revision, entry, index)
    return result


def _stats(revision: str, entry: Mapping[str, Any] | None, index: int) -> dict[str, Any]:
    if entry is None:
        requests = errors = slow = 0
    else:
        requests, errors = int(entry["requests"]), int(entry["errors"])
        buckets = entry["buckets"]
        within = int(buckets[index][1]) if index < len(buckets) - 1 else requests
        slow = requests - within
    return {
        "revision": revision,
        "requests": requests,
        "errors": errors,
        "slow": slow,
        "errorRate": errors / requests if requests else None,
        "slowRate": slow / requests if requests else None,
    }
