"""A scripted run backend: analysis runs and experiments whose verdicts a scenario decides in advance.

The simulator tests the rollout engine, not the metric providers, so a run here does not measure anything: it
becomes Successful, Failed or Inconclusive a scripted delay after it starts, in virtual time (a phase of Running
means it never completes, like a background analysis that keeps passing). Foreground runs (step, pre- and
post-promotion) and background runs follow separate scripts; each script is a sequence used in start order, whose
last entry repeats, so "the first analysis is inconclusive, later ones pass" is ``(inconclusive, successful)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from headway.core.actions import RunKind, StartAnalysisRun, StartExperiment
from headway.core.observation import RunState
from headway.engine.runs import RunStates
from headway.platforms.fake import EPOCH
from headway.spec.rollout import Rollout, rollout_key
from headway.spec.status import RunPhase

TERMINATED = "terminated by the rollout"


@dataclass(frozen=True)
class Verdict:
    """What a run ends as, ``after`` seconds from its start; RUNNING never ends on its own."""

    phase: RunPhase
    after: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class RunScript:
    """The verdicts of the runs of one scenario, by kind, in start order (the last one repeats)."""

    analysis: tuple[Verdict, ...] = (Verdict(RunPhase.SUCCESSFUL, 60.0),)
    background: tuple[Verdict, ...] = (Verdict(RunPhase.RUNNING),)
    experiment: tuple[Verdict, ...] = (Verdict(RunPhase.SUCCESSFUL, 60.0),)


@dataclass
class ScriptedRun:
    """A run as the backend holds it."""

    name: str
    rollout: str
    kind: str
    started: datetime
    verdict: Verdict
    terminated_at: datetime | None = None

    def state(self, now: datetime) -> RunState:
        ends = self.started + timedelta(seconds=self.verdict.after)
        if self.verdict.phase.completed and now >= ends and (self.terminated_at is None or self.terminated_at >= ends):
            return RunState(name=self.name, phase=self.verdict.phase, message=self.verdict.message)
        if self.terminated_at is not None:
            # Like Argo: a terminated run completes with what it measured so far, which failed nothing.
            return RunState(name=self.name, phase=RunPhase.SUCCESSFUL, message=TERMINATED)
        return RunState(name=self.name, phase=RunPhase.RUNNING)

    def completes_at(self) -> datetime | None:
        if not self.verdict.phase.completed or self.terminated_at is not None:
            return None
        return self.started + timedelta(seconds=self.verdict.after)


@dataclass
class ScriptedRuns:
    """Implements `headway.engine.runs.RunBackend` from a `RunScript`, in virtual time."""

    script: RunScript = field(default_factory=RunScript)
    now: datetime = EPOCH
    analysis_runs: dict[str, ScriptedRun] = field(default_factory=dict)
    experiments: dict[str, ScriptedRun] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)

    def advance(self, now: datetime) -> None:
        if now < self.now:
            raise ValueError(f"virtual time goes forward only: {now.isoformat()} < {self.now.isoformat()}")
        self.now = now

    def next_change_at(self) -> datetime | None:
        """When the next run completes: when a watch on AnalysisRuns would wake the controller."""
        runs = [*self.analysis_runs.values(), *self.experiments.values()]
        times = [t for run in runs if (t := run.completes_at()) is not None and t > self.now]
        return min(times, default=None)

    def runs_of(self, rollout: Rollout | str) -> list[ScriptedRun]:
        """Every run and experiment of a rollout, in start order."""
        key = rollout_key(rollout)
        runs = [*self.analysis_runs.values(), *self.experiments.values()]
        return sorted((run for run in runs if run.rollout == key), key=lambda run: run.started)

    # --- the RunBackend Protocol ---------------------------------------------------------------------------

    def start_analysis(self, rollout: Rollout, run: StartAnalysisRun) -> None:
        if run.name in self.analysis_runs:
            return
        kind = "background" if run.kind == RunKind.BACKGROUND else "analysis"
        self.analysis_runs[run.name] = self._new(rollout, run.name, kind)

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        self._terminate(self.analysis_runs.get(name))

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        if experiment.name not in self.experiments:
            self.experiments[experiment.name] = self._new(rollout, experiment.name, "experiment")

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        self._terminate(self.experiments.get(name))

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        key = rollout_key(rollout)
        analysis = {name: run.state(self.now) for name, run in self.analysis_runs.items() if run.rollout == key}
        experiments = {name: run.state(self.now) for name, run in self.experiments.items() if run.rollout == key}
        return analysis, experiments

    # --- internals -----------------------------------------------------------------------------------------

    def _new(self, rollout: Rollout, name: str, kind: str) -> ScriptedRun:
        scripts = {"analysis": self.script.analysis, "background": self.script.background}
        script = scripts.get(kind, self.script.experiment)
        ordinal = self._started.get(kind, 0)
        self._started[kind] = ordinal + 1
        verdict = script[min(ordinal, len(script) - 1)] if script else Verdict(RunPhase.RUNNING)
        return ScriptedRun(name=name, rollout=rollout_key(rollout), kind=kind, started=self.now, verdict=verdict)

    def _terminate(self, run: ScriptedRun | None) -> None:
        if run is not None and run.terminated_at is None and not run.state(self.now).phase.completed:
            run.terminated_at = self.now
