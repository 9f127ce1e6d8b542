"""AnalysisTemplate / AnalysisRun models: Argo's defaults, the provider one-of, phases."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from headway.spec.analysis import (
    PROVIDER_NAMES,
    AnalysisPhase,
    AnalysisRun,
    Argument,
    Metric,
    MetricProvider,
    WebMetric,
    has_placeholder,
    resolve_int,
)
from headway.spec.load import parse
from tests.unit.spec.manifests import lint, template

PROMETHEUS = {"prometheus": {"query": "up"}}


def metric(**fields: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": PROMETHEUS} | fields, by_alias=True, by_name=False)


def test_defaults_follow_argo() -> None:
    m = metric()
    assert (m.interval, m.count, m.failure_limit, m.inconclusive_limit) == (None, None, 0, 0)
    assert (m.consecutive_error_limit, m.consecutive_success_limit) == (4, 0)
    assert m.provider.kind == "prometheus"
    assert not m.runs_indefinitely


def test_interval_without_count_runs_indefinitely() -> None:
    assert metric(interval="30s").runs_indefinitely
    assert not metric(interval="30s", count=3).runs_indefinitely


@pytest.mark.parametrize("value", [3, "3", "{{args.count}}", "{{ args.count }}"])
def test_counts_are_int_or_placeholder(value: object) -> None:
    assert metric(count=value).count in (3, value)


def test_failure_limit_may_be_minus_one_but_counts_not() -> None:
    assert metric(failureLimit=-1).failure_limit == -1
    with pytest.raises(ValidationError, match="-1 is out of range >= 0"):
        metric(count=-1)
    with pytest.raises(ValidationError, match=r'"abc" is not an integer or an \{\{args.NAME\}\} placeholder'):
        metric(inconclusiveLimit="abc")


def test_resolve_int_substitutes_arguments() -> None:
    assert resolve_int(5) == 5
    assert resolve_int("{{args.n}}", {"n": "7"}) == 7
    assert resolve_int("{{ args.n }}", {"n": " 8 "}) == 8
    with pytest.raises(ValueError, match="unresolved placeholder"):
        resolve_int("{{args.n}}", {})
    with pytest.raises(ValueError, match='"x" is not an integer'):
        resolve_int("{{args.n}}", {"n": "x"})
    assert has_placeholder("a{{args.b}}c") and not has_placeholder("{args.b}") and not has_placeholder(3)


def test_interval_accepts_durations_and_placeholders() -> None:
    assert metric(interval="1m30s").interval == "1m30s"
    assert metric(interval="{{args.every}}").interval == "{{args.every}}"
    with pytest.raises(ValidationError, match='"soon" is not a duration'):
        metric(interval="soon")


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_each_provider_is_accepted_alone(name: str) -> None:
    configs: dict[str, Any] = {
        "prometheus": {"query": "up", "authentication": {"sigv4": {"region": "eu-west-1"}}},
        "web": {"url": "http://x", "method": "POST", "jsonBody": {"a": 1}},
        "job": {"spec": {"template": {}}},
        "datadog": {"apiVersion": "v2", "queries": {"a": "q"}, "formula": "a"},
        "newRelic": {"query": "SELECT 1"},
        "wavefront": {"query": "ts(x)"},
        "kayenta": {
            "address": "http://kayenta",
            "application": "app",
            "canaryConfigName": "c",
            "metricsAccountName": "m",
            "configurationAccountName": "c",
            "storageAccountName": "s",
            "threshold": {"pass": 90, "marginal": 75},
            "scopes": [{"name": "s", "controlScope": {}, "experimentScope": {}}],
        },
        "cloudWatch": {"metricDataQueries": [{"id": "q"}]},
        "graphite": {"query": "x"},
        "influxdb": {"query": "x"},
        "skywalking": {"query": "x", "interval": "5m"},
        "plugin": {"argoproj-labs/sample": {"anything": True}},
    }
    provider = MetricProvider.model_validate({name: configs[name]}, by_alias=True, by_name=False)
    assert provider.kind == name


def test_unknown_provider_names_the_allowed_ones() -> None:
    manifest = template(name="t", provider={"promethues": {"query": "up"}})
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.metrics[0].provider: unknown provider 'promethues' (allowed: "
        "prometheus, web, job, datadog, newRelic, wavefront, kayenta, cloudWatch, graphite, influxdb, skywalking, "
        "plugin)"
    ]


def test_exactly_one_provider() -> None:
    manifest = template(name="t", provider={"prometheus": {"query": "up"}, "web": {"url": "http://x"}})
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.metrics[0].provider: set exactly one of prometheus, web, job, "
        "datadog, newRelic, wavefront, kayenta, cloudWatch, graphite, influxdb, skywalking, plugin "
        "(got prometheus, web)"
    ]


def test_an_empty_provider_says_a_crd_may_have_dropped_it() -> None:
    manifest = template(name="t", provider={})
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.metrics[0].provider: set exactly one of prometheus, web, job, "
        "datadog, newRelic, wavefront, kayenta, cloudWatch, graphite, influxdb, skywalking, plugin (none is set; "
        "if the manifest sets one, the cluster's CRD dropped it: its schema has no such provider)"
    ]


def test_web_defaults_and_body_rules() -> None:
    web = WebMetric(url="http://x")
    assert (web.method, web.timeout_seconds, web.json_path) == ("GET", 10, "{$}")
    with pytest.raises(ValidationError, match="body and jsonBody need method POST or PUT"):
        WebMetric(url="http://x", body="{}")
    with pytest.raises(ValidationError, match="set at most one of body, jsonBody"):
        WebMetric(url="http://x", method="POST", body="{}", json_body={})


def test_argument_value_from_is_one_of() -> None:
    assert not Argument(name="a").has_default
    assert Argument(name="a", value="").has_default
    secret = {"name": "a", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    assert Argument.model_validate(secret).has_default
    with pytest.raises(ValidationError, match="set exactly one of secretKeyRef, fieldRef"):
        Argument.model_validate({"name": "a", "valueFrom": {}})


def test_phases() -> None:
    assert [phase.value for phase in AnalysisPhase] == [
        "Pending",
        "Running",
        "Successful",
        "Failed",
        "Error",
        "Inconclusive",
    ]
    assert {phase for phase in AnalysisPhase if phase.completed} == {
        AnalysisPhase.SUCCESSFUL,
        AnalysisPhase.FAILED,
        AnalysisPhase.ERROR,
        AnalysisPhase.INCONCLUSIVE,
    }
    assert {phase for phase in AnalysisPhase if phase.unsuccessful} == {
        AnalysisPhase.FAILED,
        AnalysisPhase.ERROR,
        AnalysisPhase.INCONCLUSIVE,
    }


def test_an_analysis_run_with_status_round_trips() -> None:
    data = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": "web-abc-1"},
        "spec": {"args": [{"name": "svc", "value": "web"}], "metrics": [{"name": "m", "provider": PROMETHEUS}]},
        "status": {
            "phase": "Running",
            "startedAt": "2026-01-01T00:00:00Z",
            "metricResults": [
                {
                    "name": "m",
                    "phase": "Running",
                    "count": 2,
                    "successful": 1,
                    "error": 1,
                    "consecutiveError": 1,
                    "measurements": [
                        {"phase": "Successful", "value": "[0.001]", "startedAt": "t0", "finishedAt": "t1"},
                        {"phase": "Error", "message": "connection refused", "startedAt": "t2", "finishedAt": "t3"},
                    ],
                }
            ],
        },
    }
    run = parse(data)
    assert isinstance(run, AnalysisRun)
    assert run.status is not None
    result = run.status.result("m")
    assert result is not None
    assert result.measurements[1].phase is AnalysisPhase.ERROR
    assert run.status.result("other") is None
    assert parse(run.wire()) == run


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ({"name": "..", "key": "token"}, "'..' is not a valid Secret name"),
        ({"name": "a/b", "key": "token"}, "'a/b' is not a valid Secret name"),
        ({"name": "creds", "key": "../proxies/admin.token"}, "'../proxies/admin.token' is not a valid Secret key"),
        ({"name": "creds", "key": "/etc/passwd"}, "'/etc/passwd' is not a valid Secret key"),
        ({"name": "creds", "key": ".."}, "'..' is not a valid Secret key"),
        ({"name": "creds", "key": "..data"}, "'..data' is not a valid Secret key"),
    ],
)
def test_a_secret_ref_that_could_name_a_file_outside_the_secrets_is_refused(ref: dict[str, str], problem: str) -> None:
    """The embedded mode reads ``<secrets>/<name>/<key>``: ``..`` or ``/`` there read any file into a metric."""
    assert Argument.model_validate({"name": "a", "valueFrom": {"secretKeyRef": {"name": "ok", "key": "ok.key-1_A"}}})
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Argument.model_validate({"name": "a", "valueFrom": {"secretKeyRef": ref}})
