"""The RunBackend contract: starting by name is idempotent, terminating completes, observing reads back.

Run against every backend (`tests.contract.adapters.RUN_BACKENDS`): the simulator's scripted one, the in-process
`AnalysisExecutor` (embedded mode), the simulator's `SimAnalysis` over it, and the Kubernetes backend's
AnalysisRun and Experiment objects on the API server emulator, measured by the controller's `RunMeasurer`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from headway.core.actions import RunKind, StartAnalysisRun, StartExperiment
from headway.engine.runs import RunBackend
from headway.platforms.fake import EPOCH
from headway.sim.runs import RunScript, ScriptedRuns, Verdict
from headway.spec.rollout import RolloutAnalysis, RolloutExperimentStep
from headway.spec.status import RunPhase
from tests.contract import adapters
from tests.scenarios.harness import canary

ROLLOUT = canary(
    [{"setWeight": 20}, {"experiment": {"templates": [{"name": "baseline", "specRef": "stable"}]}}],
    analysis={"templates": [{"templateName": "error-rate"}]},
)
"""A rollout with background analysis and an experiment step (a backend may look only where the spec says)."""
ANALYSIS = RolloutAnalysis.model_validate({"templates": [{"templateName": "error-rate"}]})
EXPERIMENT = RolloutExperimentStep.model_validate({"templates": [{"name": "baseline", "specRef": "stable"}]})


def start(name: str, kind: RunKind = RunKind.STEP) -> StartAnalysisRun:
    return StartAnalysisRun(name=name, kind=kind, analysis=ANALYSIS, hash="new", stable_hash="old")


@pytest.fixture(params=adapters.params(adapters.RUN_BACKENDS))
def adapter(request: pytest.FixtureRequest) -> adapters.RunAdapter:
    entry: adapters.RunAdapter = request.param
    return entry


@pytest.fixture
def runs(adapter: adapters.RunAdapter, request: pytest.FixtureRequest) -> RunBackend:
    return adapter.build(request)


def test_a_started_run_is_observed(runs: RunBackend) -> None:
    runs.start_analysis(ROLLOUT, start("web-1"))

    analysis, experiments = runs.observe(ROLLOUT)

    assert list(analysis) == ["web-1"]
    assert analysis["web-1"].name == "web-1"
    assert dict(experiments) == {}


def test_starting_twice_is_starting_once(runs: RunBackend) -> None:
    runs.start_analysis(ROLLOUT, start("web-1"))
    runs.start_analysis(ROLLOUT, start("web-1"))

    assert list(runs.observe(ROLLOUT)[0]) == ["web-1"]


def test_terminating_completes_a_run_and_is_idempotent(adapter: adapters.RunAdapter, runs: RunBackend) -> None:
    runs.start_analysis(ROLLOUT, start("web-bg", RunKind.BACKGROUND))
    adapter.settle(runs)
    assert not runs.observe(ROLLOUT)[0]["web-bg"].phase.completed, "a background run keeps running until told"

    runs.terminate_analysis(ROLLOUT, "web-bg")
    runs.terminate_analysis(ROLLOUT, "web-bg")
    adapter.settle(runs)

    assert runs.observe(ROLLOUT)[0]["web-bg"].phase.completed


def test_terminating_an_unknown_run_is_a_no_op(runs: RunBackend) -> None:
    runs.terminate_analysis(ROLLOUT, "ghost")
    runs.terminate_experiment(ROLLOUT, "ghost")

    assert runs.observe(ROLLOUT) == ({}, {})


def test_experiments_start_once_and_terminate(adapter: adapters.RunAdapter, runs: RunBackend) -> None:
    experiment = StartExperiment(name="web-exp", experiment=EXPERIMENT, canary_hash="new", stable_hash="old")
    runs.start_experiment(ROLLOUT, experiment)
    runs.start_experiment(ROLLOUT, experiment)

    runs.terminate_experiment(ROLLOUT, "web-exp")
    adapter.settle(runs)

    experiments = runs.observe(ROLLOUT)[1]
    assert list(experiments) == ["web-exp"]
    assert experiments["web-exp"].phase.completed


def test_rollouts_see_only_their_runs(runs: RunBackend) -> None:
    runs.start_analysis(ROLLOUT, start("web-1"))

    assert runs.observe(canary(name="api")) == ({}, {})


# --- the scripted backend ------------------------------------------------------------------------------------


def test_scripted_verdicts_come_after_their_delay_in_start_order() -> None:
    script = RunScript(analysis=(Verdict(RunPhase.INCONCLUSIVE, 30), Verdict(RunPhase.SUCCESSFUL, 60)))
    runs = ScriptedRuns(script=script)
    runs.start_analysis(ROLLOUT, start("first"))
    runs.start_analysis(ROLLOUT, start("second"))
    runs.start_analysis(ROLLOUT, start("third"))

    runs.advance(EPOCH + timedelta(seconds=30))
    phases = {name: state.phase for name, state in runs.observe(ROLLOUT)[0].items()}
    assert phases == {"first": RunPhase.INCONCLUSIVE, "second": RunPhase.RUNNING, "third": RunPhase.RUNNING}
    assert runs.next_change_at() == EPOCH + timedelta(seconds=60)

    runs.advance(EPOCH + timedelta(seconds=60))
    assert runs.observe(ROLLOUT)[0]["third"].phase is RunPhase.SUCCESSFUL


def test_scripted_background_runs_keep_running_by_default() -> None:
    runs = ScriptedRuns()
    runs.start_analysis(ROLLOUT, start("bg", RunKind.BACKGROUND))

    runs.advance(EPOCH + timedelta(hours=5))

    assert runs.observe(ROLLOUT)[0]["bg"].phase is RunPhase.RUNNING
    assert runs.next_change_at() is None


def test_scripted_termination_beats_a_later_verdict() -> None:
    runs = ScriptedRuns(script=RunScript(analysis=(Verdict(RunPhase.FAILED, 60),)))
    runs.start_analysis(ROLLOUT, start("step"))
    runs.advance(EPOCH + timedelta(seconds=10))

    runs.terminate_analysis(ROLLOUT, "step")
    runs.advance(EPOCH + timedelta(seconds=120))

    assert runs.observe(ROLLOUT)[0]["step"].phase is RunPhase.SUCCESSFUL
