"""Experiment model: Argo's defaults and phases."""

from __future__ import annotations

from headway.spec.analysis import AnalysisPhase
from headway.spec.experiment import Experiment, TemplateStatusCode
from headway.spec.load import parse


def test_defaults_follow_argo() -> None:
    experiment = parse(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "exp"},
            "spec": {
                "duration": "5m",
                "templates": [
                    {"name": "canary", "selector": {"matchLabels": {"app": "a"}}, "template": {}, "service": {}}
                ],
                "analyses": [{"name": "a", "templateName": "rate", "requiredForCompletion": True}],
            },
        }
    )
    assert isinstance(experiment, Experiment)
    spec = experiment.spec
    assert (spec.progress_deadline_seconds, spec.scale_down_delay_seconds) == (600, 30)
    assert (spec.templates[0].replicas, spec.templates[0].min_ready_seconds) == (1, 0)
    assert spec.templates[0].service is not None and spec.templates[0].service.name is None
    assert spec.analyses[0].required_for_completion and not spec.analyses[0].cluster_scope


def test_status_reuses_analysis_phases() -> None:
    experiment = parse(
        {
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "exp"},
            "spec": {"templates": []},
            "status": {
                "phase": "Inconclusive",
                "templateStatuses": [{"name": "canary", "status": "Running", "availableReplicas": 1}],
                "analysisRuns": [{"name": "a", "analysisRun": "exp-a", "phase": "Successful"}],
            },
        }
    )
    assert isinstance(experiment, Experiment)
    assert experiment.status is not None
    assert experiment.status.phase is AnalysisPhase.INCONCLUSIVE and experiment.status.phase.completed
    assert not experiment.status.template_statuses[0].status.completed
    assert TemplateStatusCode.FAILED.completed
