"""The port for AnalysisRuns and Experiments the rollout starts, stops and waits on.

The analysis controller implements it for real (it creates AnalysisRun objects, or runs them in-process in the
embedded mode); the simulator's scripted backend (`headway.sim.runs`) decides verdicts by scenario. Runs are
identified by the names the core chose, so starting one twice is harmless and a restarted engine finds its runs
again by observing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.observation import RunState
from headway.spec.rollout import Rollout

RunStates = Mapping[str, RunState]


class RunBackend(Protocol):
    """Starts, terminates and observes the analysis runs and experiments of rollouts."""

    def start_analysis(self, rollout: Rollout, run: StartAnalysisRun) -> None:
        """Create the run ``run.name`` unless it exists; idempotent (an existing run is left as it is)."""
        ...

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        """Stop a running run (it completes with what it measured); idempotent; unknown or completed: no-op."""
        ...

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        """Create the experiment ``experiment.name`` unless it exists; idempotent."""
        ...

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        """Stop a running experiment; idempotent; unknown or completed: no-op."""
        ...

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        """The analysis runs and the experiments of ``rollout`` by name, with their phases; reads only."""
        ...
