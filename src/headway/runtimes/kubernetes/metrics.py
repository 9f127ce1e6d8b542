"""The controller's Prometheus metrics and its /metrics and /healthz endpoints (aiohttp + prometheus-client).

A registry of our own (not the process-global default) so that several controllers in one test process do not
collide, and so /metrics shows exactly what the controller exports.
"""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
        self.phase = Gauge(
            "headway_rollout_phase",
            "1 for the rollout's current phase",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )
        self.info = Gauge(
            "headway_rollout_info",
            "Rollout identity and strategy",
            ["namespace", "name", "strategy"],
            registry=self.registry,
        )
        self.leader = Gauge("headway_controller_leader", "1 while this replica holds the Lease", registry=self.registry)

    def set_phase(self, namespace: str, name: str, phase: Phase | None, strategy: str) -> None:
        for candidate in Phase:
            self.phase.labels(namespace, name, candidate.value).set(1.0 if candidate == phase else 0.0)
        self.info.labels(namespace, name, strategy).set(1.0)

    def forget(self, namespace: str, name: str) -> None:
        for candidate in Phase:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, candidate.value)

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
