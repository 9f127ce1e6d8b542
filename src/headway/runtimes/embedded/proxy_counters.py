"""Per-revision request counters and latency histograms of the embedded proxy, cheap enough for every request.

The hot path increments plain integers (no locks: the proxy is one event loop) and one histogram bucket found by
bisection; nothing is allocated per request. Exposition is done on demand: Prometheus text through a
prometheus-client collector (so the format is the library's, not ours), and JSON for the `proxy` metric provider.

The judge needs counts per window, not since start, so the proxy keeps a snapshot of all counters every second
for the last `HISTORY_SECONDS`; `window(seconds)` returns the difference between now and the snapshot that old.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
"""Latency bucket upper bounds in seconds; a provider's latency cut must be one of them (or is rounded up)."""

HISTORY_SECONDS = 900


class RevisionCounters:
    """Counts for one revision since the proxy started (``buckets`` are per-bucket, not cumulative)."""

    __slots__ = ("buckets", "errors", "latency_sum", "mirrored", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.mirrored = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, status: int, seconds: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.latency_sum += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1

    def frozen(self) -> Totals:
        return Totals(self.requests, self.errors, self.latency_sum, tuple(self.buckets))


@dataclass(frozen=True)
class Totals:
    """An immutable copy of one revision's counters (a snapshot, or the difference of two)."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    buckets: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(
            self.requests - other.requests,
            self.errors - other.errors,
            self.latency_sum - other.latency_sum,
            tuple(a - b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )

    def slower_than(self, cut: float) -> int:
        """Requests slower than the smallest bucket bound at or above ``cut`` (all buckets beyond it)."""
        return sum(self.buckets[bisect_left(BUCKETS, cut) + 1 :])

    def wire(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            cumulative.append(["+Inf" if bound == float("inf") else bound, running])
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latencySum": round(self.latency_sum, 6),
            "buckets": cumulative,
        }


class Counters:
    """All revisions' counters plus the one-second history that windows are computed from."""

    def __init__(self) -> None:
        self.revisions: dict[str, RevisionCounters] = {}
        self._history: deque[tuple[float, dict[str, Totals]]] = deque(maxlen=HISTORY_SECONDS + 1)

    def of(self, revision: str) -> RevisionCounters:
        counters = self.revisions.get(revision)
        if counters is None:
            counters = self.revisions[revision] = RevisionCounters()
        return counters

    def totals(self) -> dict[str, Totals]:
        return {revision: counters.frozen() for revision, counters in self.revisions.items()}

    def snapshot(self, now: float) -> None:
        """Record the totals at monotonic time ``now`` (called once a second by the proxy)."""
        self._history.append((now, self.totals()))

    def window(self, now: float, seconds: float | None) -> tuple[dict[str, Totals], float]:
        """Counts over roughly the last ``seconds`` (None: since start) and the span actually covered."""
        totals = self.totals()
        if seconds is None or not self._history:
            return totals, seconds or 0.0
        base_time, base = self._history[0]
        for at, snapshot in self._history:
            if at > now - seconds:
                break
            base_time, base = at, snapshot
        empty = Totals()
        return {revision: total - base.get(revision, empty) for revision, total in totals.items()}, now - base_time


class CountersCollector(Collector):
    """Renders the counters as Prometheus metrics (``headway_proxy_*``) for a prometheus-client registry."""

    def __init__(self, counters: Counters, roles: Mapping[str, str] | None = None) -> None:
        self.counters = counters
        self.roles: Mapping[str, str] = roles or {}
        self.weights: Mapping[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("headway_proxy_requests", "Requests answered, by revision", labels=["revision"])
        errors = CounterMetricFamily(
            "headway_proxy_errors", "Responses with status 5xx, by revision", labels=["revision"]
        )
        mirrored = CounterMetricFamily("headway_proxy_mirrored", "Requests copied to a revision", labels=["revision"])
        latency = HistogramMetricFamily(
            "headway_proxy_request_duration_seconds", "Time to response headers, by revision", labels=["revision"]
        )
        for revision, counters in sorted(self.counters.revisions.items()):
            requests.add_metric([revision], counters.requests)
            errors.add_metric([revision], counters.errors)
            mirrored.add_metric([revision], counters.mirrored)
            buckets, running = [], 0
            for bound, count in zip((*BUCKETS, float("inf")), counters.buckets, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            latency.add_metric([revision], buckets, counters.latency_sum)
        weight = GaugeMetricFamily(
            "headway_proxy_weight", "Configured weight, by revision and role", labels=["revision", "role"]
        )
        for revision, value in sorted(self.weights.items()):
            weight.add_metric([revision, self.roles.get(revision, "")], value)
        yield from (requests, errors, mirrored, latency, weight)
