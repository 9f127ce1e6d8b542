"""The embedded mode refuses at apply what it cannot do, and errs at once on a stored run it cannot measure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from headway.bootstrap.embedded import wire_analysis
from headway.core.actions import RunKind, StartAnalysisRun
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.embedded.runner import put
from headway.spec.analysis import AnalysisPhase
from headway.spec.load import SpecError
from headway.spec.rollout import RolloutAnalysis
from headway.stores.sqlite import SqliteStore
from tests.scenarios.harness import make_rollout
from tests.unit.runtimes.embedded.world import MANIFEST, World

DATADOG = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "rate", "namespace": "default"},
    "spec": {"metrics": [{"name": "errors", "provider": {"datadog": {"query": "avg:errors{*}"}}}]},
}


def test_a_template_with_a_provider_the_mode_lacks_is_refused_with_the_rest_of_its_file(world: World) -> None:
    text = MANIFEST + "---\n" + yaml.safe_dump(DATADOG)

    with pytest.raises(SpecError) as refused:
        world.runner.apply_text(text, "app.yaml")

    (problem,) = refused.value.problems
    assert (problem.kind, problem.path) == ("AnalysisTemplate", "spec.metrics[0].provider")
    assert "the embedded mode cannot run the 'datadog' metric provider" in problem.message
    assert world.documents.list_documents("AnalysisTemplate") == []
    assert world.documents.list_documents("Rollout") == []  # all or nothing


def test_an_experiment_is_refused(world: World) -> None:
    experiment = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "exp"},
        "spec": {
            "templates": [
                {
                    "name": "a",
                    "selector": {"matchLabels": {"app": "a"}},
                    "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a"}]}},
                }
            ]
        },
    }

    with pytest.raises(SpecError, match="the embedded mode does not run Experiments"):
        world.runner.apply_text(yaml.safe_dump(experiment), "exp.yaml")


def test_a_stored_template_the_mode_cannot_measure_makes_its_run_error_at_start(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        put(store, "AnalysisTemplate", "default/rate", DATADOG)  # stored before apply checked the mode
        executor, _ = wire_analysis(store, Proxies(tmp_path), tmp_path)
        analysis = RolloutAnalysis.model_validate({"templates": [{"templateName": "rate"}]})
        start = StartAnalysisRun(name="web-run", kind=RunKind.STEP, analysis=analysis, hash="new", stable_hash="old")

        executor.start_analysis(make_rollout({"canary": {"steps": [{"setWeight": 50}]}}), start)

        run = executor.run("web-run")
        assert run is not None and run.status is not None
        assert run.status.phase is AnalysisPhase.ERROR
        assert "the embedded mode cannot run the 'datadog' metric provider" in (run.status.message or "")
    finally:
        store.close()
