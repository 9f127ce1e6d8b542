"""The controller's Prometheus metrics and its /metrics and /healthz endpoints (aiohttp + prometheus-client).

A registry of our own (not the process-global default) so that several controllers in one test process do not
collide, and so /metrics shows exactly what the controller exports. The per-Rollout series (phase, info) come
from a collector over one small tuple per Rollout, rendered at scrape time: labelled Gauge children cost a
lock-guarded object each, six per Rollout, which made them a visible share of the controller's memory per Rollout.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from headway.spec.status import Phase


class ControllerMetrics:
    """What the controller counts: passes, their duration, errors, rollout phases and API requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_seconds = Histogram(
            "headway_reconcile_duration_seconds",
            "Duration of one reconcile pass",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.errors = Counter("headway_reconcile_errors", "Passes that failed", ["reason"], registry=self.registry)
        self.rollouts = RolloutCollector()
        self.registry.register(self.rollouts)
        self.analysis_runs = Counter(
            "headway_analysis_runs",
            "AnalysisRuns this controller finished, by phase",
            ["phase"],
            registry=self.registry,
        )
        self.analysis_metrics = Counter(
            "headway_analysis_metrics",
            "Metrics of the AnalysisRuns this controller finished, by the metric's phase",
            ["phase"],
            registry=self.registry,
        )
        self.leader = Gauge("headway_controller_leader", "1 while this replica holds the Lease", registry=self.registry)

    def set_phase(self, namespace: str, name: str, phase: Phase | None, strategy: str) -> None:
        self.rollouts.known[(namespace, name)] = (phase.value if phase is not None else "", strategy)

    def run_finished(self, phase: str, metric_phases: list[str]) -> None:
        """Count a run this controller measured to completion, and its metrics' final phases."""
        self.analysis_runs.labels(phase).inc()
        for metric_phase in metric_phases:
            self.analysis_metrics.labels(metric_phase).inc()

    def forget(self, namespace: str, name: str) -> None:
        self.rollouts.known.pop((namespace, name), None)

    def app(self) -> web.Application:
        """``/metrics`` in the Prometheus text format, ``/healthz`` answering ok."""

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        return app


class RolloutCollector(Collector):
    """``headway_rollout_phase`` (1 for the current phase, 0 for the others) and ``headway_rollout_info``."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], tuple[str, str]] = {}
        """(namespace, name) → (phase, strategy)."""

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "headway_rollout_phase", "1 for the rollout's current phase", labels=["namespace", "name", "phase"]
        )
        info = GaugeMetricFamily(
            "headway_rollout_info", "Rollout identity and strategy", labels=["namespace", "name", "strategy"]
        )
        for (namespace, name), (current, strategy) in list(self.known.items()):
            for candidate in Phase:
                phase.add_metric([namespace, name, candidate.value], 1.0 if candidate.value == current else 0.0)
            info.add_metric([namespace, name, strategy], 1.0)
        yield phase
        yield info
