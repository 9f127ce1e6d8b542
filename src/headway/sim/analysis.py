"""Real analysis in the simulator: AnalysisRuns measured against the synthetic traffic, in virtual time.

`headway.sim.runs` scripts verdicts in advance; this module runs the real `AnalysisExecutor` instead, so a
judge-based template can be tried with ``headway simulate`` and the verdict comes from the traffic the scenario
produces. `TrafficCounts` is the counting provider of judge metrics: each measurement is the window of requests
and failed requests per revision since the previous measurement of that metric (the first measurement only sets
the starting point, so canary and stable are always compared over the same span of time). `SimAnalysis` wraps
the executor with the ``advance``/``next_change_at`` pair the simulation loop drives its fakes with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.analysis import JUDGE_PLUGIN
from headway.engine.analysis import AnalysisExecutor
from headway.engine.runs import RunStates
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.sim.traffic import TrafficModel
from headway.spec.analysis import AnalysisTemplate, Metric
from headway.spec.rollout import Rollout

Hashes = Callable[[], tuple[str | None, str | None]]
"""The canary and stable revisions right now (None while there is none)."""

Counts = tuple[int, int, int, int]


@dataclass
class TrafficCounts:
    """Implements `headway.providers.base.MetricProvider`: judge windows from the traffic model's counters."""

    traffic: TrafficModel
    hashes: Hashes
    type: ClassVar[str] = JUDGE_PLUGIN
    _last: dict[tuple[str, str], Counts] = field(default_factory=dict)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        canary, stable = self.hashes()
        if not canary or not stable or canary == stable:
            return ProviderResult(value=_window((0, 0, 0, 0)))
        now = self._cumulative(canary, stable)
        key = (context.run_name, metric.name)
        before = self._last.get(key)
        self._last[key] = now
        if before is None:
            return ProviderResult(value=_window((0, 0, 0, 0)))
        delta = tuple(max(0, after - earlier) for after, earlier in zip(now, before, strict=True))
        return ProviderResult(value=_window((delta[0], delta[1], delta[2], delta[3])))

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        return ProviderResult(error="traffic counts are never pending")

    async def cancel(self, metric: Metric, pending: str) -> None:
        return None

    def _cumulative(self, canary: str, stable: str) -> Counts:
        served = self.traffic.served
        c, s = served.get(canary), served.get(stable)
        return (
            round(c.requests) if c else 0,
            round(c.failed) if c else 0,
            round(s.requests) if s else 0,
            round(s.failed) if s else 0,
        )


def _window(counts: Counts) -> dict[str, int]:
    canary, canary_bad, stable, stable_bad = counts
    return {"canaryRequests": canary, "canaryBad": canary_bad, "stableRequests": stable, "stableBad": stable_bad}


class SimAnalysis:
    """`headway.engine.runs.RunBackend` over a real `AnalysisExecutor`, moved by the simulation's clock.

    The providers in a simulation answer at once, so `advance` runs the executor's ``tick`` to completion on a
    private event loop; call it from synchronous code (the simulation loop), not from inside a running loop.
    """

    def __init__(
        self,
        *,
        templates: Mapping[str, AnalysisTemplate],
        providers: Mapping[str, MetricProvider],
        now: datetime,
    ) -> None:
        self.executor = AnalysisExecutor(templates=templates, providers=providers)
        self.now = now
        self._loop = asyncio.new_event_loop()

    def advance(self, now: datetime) -> None:
        if now < self.now:
            raise ValueError(f"virtual time goes forward only: {now.isoformat()} < {self.now.isoformat()}")
        self.now = now
        self._loop.run_until_complete(self.executor.tick(now))

    def next_change_at(self) -> datetime | None:
        """When a run next measures (and so may change phase)."""
        due = self.executor.next_due()
        return due if due is not None and due > self.now else None

    def close(self) -> None:
        self._loop.close()

    def start_analysis(self, rollout: Rollout, run: StartAnalysisRun) -> None:
        self.executor.start_analysis(rollout, run)
        # Measure what is due at once, as the analysis controller would on seeing the new run.
        self._loop.run_until_complete(self.executor.tick(self.now))

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        self.executor.terminate_analysis(rollout, name)
        self._loop.run_until_complete(self.executor.tick(self.now))

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        self.executor.start_experiment(rollout, experiment)

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        self.executor.terminate_experiment(rollout, name)

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        return self.executor.observe(rollout)
