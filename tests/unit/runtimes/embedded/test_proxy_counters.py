"""Per-revision counters: errors are 5xx, latency lands in the right bucket, windows subtract old snapshots."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from headway.runtimes.embedded.proxy_counters import Counters, CountersCollector, Totals


def test_requests_errors_and_latency_buckets() -> None:
    counters = Counters()
    web = counters.of("abc")
    for status, seconds in [(200, 0.0005), (503, 0.004), (404, 0.3), (500, 20.0)]:
        web.observe(status, seconds)

    totals = web.frozen()
    assert (totals.requests, totals.errors) == (4, 2)
    assert totals.slower_than(0.005) == 2
    assert totals.slower_than(0.3) == 1  # 0.3 s is within the 0.3 bucket: not slower
    assert totals.slower_than(0.25) == 1  # a cut between bounds rounds up to the next bound (0.3)


def test_a_window_counts_only_what_happened_since_its_start() -> None:
    counters = Counters()
    counters.snapshot(0.0)
    counters.of("abc").observe(200, 0.01)
    counters.snapshot(10.0)
    counters.of("abc").observe(500, 0.01)
    counters.snapshot(20.0)
    counters.of("abc").observe(200, 0.01)

    recent, covered = counters.window(25.0, 10.0)
    assert (recent["abc"].requests, recent["abc"].errors, covered) == (2, 1, 15.0)
    everything, _ = counters.window(25.0, None)
    assert everything["abc"].requests == 3


def test_a_window_longer_than_the_history_covers_all_of_it() -> None:
    counters = Counters()
    counters.snapshot(100.0)
    counters.of("abc").observe(200, 0.01)

    recent, covered = counters.window(101.0, 3600.0)
    assert (recent["abc"].requests, covered) == (1, 1.0)


def test_json_buckets_are_cumulative() -> None:
    wire = Totals(requests=2, buckets=(1, 1, *([0] * 14))).wire()

    assert wire["buckets"][0] == [0.001, 1]
    assert wire["buckets"][-1] == ["+Inf", 2]


def test_prometheus_exposition_is_valid_text_format() -> None:
    counters = Counters()
    counters.of("abc").observe(500, 0.02)
    registry = CollectorRegistry()
    collector = CountersCollector(counters)
    collector.weights, collector.roles = {"abc": 100}, {"abc": "stable"}
    registry.register(collector)

    text = generate_latest(registry).decode()

    assert 'headway_proxy_requests_total{revision="abc"} 1.0' in text
    assert 'headway_proxy_errors_total{revision="abc"} 1.0' in text
    assert 'headway_proxy_request_duration_seconds_bucket{le="0.025",revision="abc"} 1.0' in text
    assert 'headway_proxy_weight{revision="abc",role="stable"} 100.0' in text
