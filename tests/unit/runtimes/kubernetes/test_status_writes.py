"""What a structural schema's pruning took from an object Headway created (`dropped`), and when that loss makes
a created AnalysisRun or Experiment untrustworthy (`lost_run_fields`, `lost_experiment_fields`)."""

from __future__ import annotations

from typing import Any

from headway.runtimes.kubernetes.runs import lost_experiment_fields, lost_run_fields
from headway.runtimes.kubernetes.status_writes import dropped
from headway.spec.analysis import AnalysisRunSpec


def test_dropped_names_missing_and_changed_values_by_path() -> None:
    sent = {"a": {"b": 1, "c": [1, {"d": "x"}]}, "e": "y", "f": None}
    kept = {"a": {"c": [1, {}]}, "e": "z"}
    assert dropped(sent, kept) == ["a.b", "a.c[1].d", "e"]  # a null is unset: nothing was lost there


def test_dropped_is_empty_when_everything_was_kept() -> None:
    sent = {"a": [{"b": 1}], "c": {"d": True}}
    assert dropped(sent, {**sent, "extra": 1}) == []  # what the server added is not a loss


def _spec(**metric: Any) -> AnalysisRunSpec:
    base = {"name": "m", "provider": {"web": {"url": "http://127.0.0.1:1/x"}}}
    return AnalysisRunSpec.model_validate({"metrics": [{**base, **metric}]})


def test_a_run_spec_that_lost_a_field_with_meaning_is_refused_naming_it() -> None:
    sent = _spec(count=3, consecutiveSuccessLimit=3)
    stored = {"spec": {"metrics": [{"name": "m", "count": 3, "provider": {"web": {"url": "http://127.0.0.1:1/x"}}}]}}
    problem = lost_run_fields(sent, stored)
    assert problem is not None and "spec.metrics[0].consecutiveSuccessLimit" in problem


def test_a_run_spec_that_lost_only_defaults_and_headways_extras_is_fine() -> None:
    sent = _spec()  # its wire form carries every default (consecutiveSuccessLimit: 0, method: GET, ...)
    stored = {"spec": {"metrics": [{"name": "m", "provider": {"web": {"url": "http://127.0.0.1:1/x"}}}]}}
    assert lost_run_fields(sent, stored) is None
    assert lost_run_fields(sent, {"spec": {**stored["spec"], "revision": "abc"}}) is None


def test_an_experiment_may_lose_what_the_runner_never_reads_but_not_what_it_runs() -> None:
    template = {"name": "canary", "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {}}}
    sent = {"templates": [{**template, "weight": 10, "service": {"name": "x"}}], "canaryRevision": "abc"}
    assert lost_experiment_fields(sent, {"spec": {"templates": [{**template, "service": {}}]}}) is None
    lost = lost_experiment_fields({**sent, "duration": "1m"}, {"spec": {"templates": [template]}})
    assert lost is not None and "spec.duration" in lost
