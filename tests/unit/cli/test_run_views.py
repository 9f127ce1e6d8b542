"""`headway.dashboard.runs`: an AnalysisRun (wire form) as the run view `get rollout` and the dashboard show."""

from __future__ import annotations

import json
from typing import Any

import pytest

from headway.dashboard.runs import run_view_of, tolerated_ratios


def measurement(value: str | None, phase: str = "Successful", **metadata: str) -> dict[str, Any]:
    return {
        "phase": phase,
        "value": value,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:01Z",
        "metadata": metadata,
    }


def run(*results: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-abc-1", "labels": {"headway.dev/run-kind": "background"}},
        "spec": spec or {"revision": "abc", "metrics": []},
        "status": {"phase": "Running", "metricResults": list(results)},
    }


@pytest.mark.parametrize(
    ("raw", "charted"),
    [
        pytest.param("0.5", 0.5, id="number"),
        pytest.param("[0.25]", 0.25, id="one-element vector"),
        pytest.param("[1, 2]", None, id="vector of several"),
        pytest.param("NaN", None, id="NaN is a gap"),
        pytest.param("+Inf", None, id="infinity is a gap"),
        pytest.param("up", None, id="text"),
        pytest.param(None, None, id="no value (an error)"),
    ],
)
def test_a_measurement_value_charts_as_a_finite_number_or_a_gap(raw: str | None, charted: float | None) -> None:
    view = run_view_of(run({"name": "m", "phase": "Running", "measurements": [measurement(raw)]}))
    assert [m.value for m in view.measurements] == [charted]
    json.dumps(view.wire(), allow_nan=False)  # the page's JSON.parse refuses NaN and Infinity


def test_the_judge_evidence_reads_its_metric_result_and_the_spec_tolerated_ratio() -> None:
    judge = {"source": "proxy", "toleratedRatio": "1.25"}
    spec = {"revision": "abc", "metrics": [{"name": "errors", "provider": {"plugin": {"headway.dev/judge": judge}}}]}
    windows = [
        measurement('{"canaryRequests": 10, "stableRequests": 30}', ratio="2.0", lower="0.5", upper="inf"),
        measurement('{"canaryRequests": 5, "stableRequests": 15}', ratio="1.5", lower="0.8", upper="3"),
    ]
    evidence = {"pValue": "0.2", "ratio": "1.5", "lower": "0.8", "upper": "3", "explanation": "Hold"}
    view = run_view_of(
        run({"name": "errors", "phase": "Running", "measurements": windows, "metadata": evidence}, spec=spec)
    )
    assert (view.kind, view.revision) == ("", "abc")  # no kind label asked for
    assert view.judge is not None
    assert (view.judge.metric, view.judge.tolerated_ratio, view.judge.verdict) == ("errors", 1.25, "Hold")
    assert (view.judge.canary_requests, view.judge.stable_requests) == (15, 45)
    assert [(p.ratio, p.upper) for p in view.judge.history] == [(2.0, None), (1.5, 3.0)]  # inf: unbounded so far
    assert tolerated_ratios({"metrics": [{"name": "x", "provider": {"web": {}}}]}) == {}


def test_a_status_that_does_not_parse_keeps_the_phase_and_says_what_is_wrong() -> None:
    body = run({"name": "m", "phase": "Running", "measurements": [{"phase": "Sideways"}]})
    body["status"]["message"] = "measuring"
    view = run_view_of(body, kind_label="headway.dev/run-kind")
    assert (view.name, view.phase, view.kind, view.measurements) == ("web-abc-1", "Running", "background", [])
    assert view.message.startswith("measuring; status.metricResults.0.measurements.0.phase: Input should be")


def test_a_run_without_status_is_pending() -> None:
    view = run_view_of({"metadata": {"name": "new"}, "spec": {}})
    assert (view.phase, view.message, view.revision, view.judge) == ("Pending", "", None, None)


def test_the_revision_is_the_spec_s_else_argo_s_hash_label() -> None:
    labelled = {"metadata": {"name": "x", "labels": {"rollouts-pod-template-hash": "def"}}, "spec": {}}
    assert run_view_of(labelled).revision == "def"
    both = {**labelled, "spec": {"revision": "abc"}}
    assert run_view_of(both).revision == "abc"
