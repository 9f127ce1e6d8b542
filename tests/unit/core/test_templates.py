"""Template resolution: Argo's composition, argument merging and placeholder substitution, with clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core.templates import TemplateError, field_path, resolve_analysis, resolve_metric, substitute
from headway.spec.analysis import AnalysisRunSpec, AnalysisTemplate, ClusterAnalysisTemplate, Metric
from headway.spec.rollout import Rollout, RolloutAnalysis
from tests.scenarios.harness import canary

ROLLOUT: Rollout = canary()


def template(name: str, metrics: list[dict[str, Any]], args: list[dict[str, Any]] | None = None) -> AnalysisTemplate:
    return AnalysisTemplate.model_validate(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name, "namespace": ROLLOUT.metadata.namespace},
            "spec": {"metrics": metrics, "args": args or []},
        }
    )


def prometheus(name: str, query: str = "up", **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"prometheus": {"address": "http://prom:9090", "query": query}}, **fields}


SUCCESS_RATE = template(
    "success-rate",
    [prometheus("success-rate", 'sum(rate(x{svc="{{args.service-name}}"}[5m]))', successCondition="result[0] >= 0.95")],
    [{"name": "service-name"}],
)
ERROR_RATE = template(
    "error-rate",
    [prometheus("error-rate", "{{ args.service-name }}-{{args.latest-hash}}", interval="{{args.interval}}")],
    [{"name": "service-name"}, {"name": "latest-hash"}, {"name": "interval", "value": "5m"}],
)
TEMPLATES = {"success-rate": SUCCESS_RATE, "error-rate": ERROR_RATE}


def resolve(analysis: dict[str, Any], templates: dict[str, AnalysisTemplate] | None = None, **kw: Any) -> Any:
    return resolve_analysis(
        RolloutAnalysis.model_validate(analysis),
        kw.pop("rollout", ROLLOUT),
        templates=TEMPLATES if templates is None else templates,
        cluster_templates=kw.pop("cluster_templates", {}),
        stable_hash=kw.pop("stable_hash", "stable1"),
        latest_hash="canary1",
    )


def test_multiple_templates_merge_metrics_and_args() -> None:
    spec = resolve(
        {
            "templates": [{"templateName": "success-rate"}, {"templateName": "error-rate"}],
            "args": [
                {"name": "service-name", "value": "web.default.svc"},
                {"name": "latest-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            ],
        }
    )

    assert isinstance(spec, AnalysisRunSpec)
    assert [m.name for m in spec.metrics] == ["success-rate", "error-rate"]
    assert spec.metrics[0].provider.prometheus is not None
    assert spec.metrics[0].provider.prometheus.query == 'sum(rate(x{svc="web.default.svc"}[5m]))'
    assert spec.metrics[1].provider.prometheus is not None
    assert spec.metrics[1].provider.prometheus.query == "web.default.svc-canary1"
    assert spec.metrics[1].interval == "5m"
    assert {a.name: a.value for a in spec.args} == {
        "service-name": "web.default.svc",
        "latest-hash": "canary1",
        "interval": "5m",
    }


def test_rollout_args_override_template_defaults() -> None:
    spec = resolve(
        {
            "templates": [{"templateName": "error-rate"}],
            "args": [
                {"name": "service-name", "value": "a"},
                {"name": "latest-hash", "value": "h"},
                {"name": "interval", "value": "30s"},
            ],
        }
    )

    assert isinstance(spec, AnalysisRunSpec)
    assert spec.metrics[0].interval == "30s"


@pytest.mark.parametrize(
    ("analysis", "templates", "field", "message"),
    [
        pytest.param(
            {"templates": [{"templateName": "success-rate"}]},
            None,
            "args.service-name",
            "is required by the template but was not supplied",
            id="missing-required-arg",
        ),
        pytest.param(
            {"templates": [{"templateName": "nope"}]},
            None,
            "templates[0]",
            "AnalysisTemplate 'nope' not found",
            id="unknown-template",
        ),
        pytest.param(
            {"templates": [{"templateName": "success-rate"}, {"templateName": "again"}]},
            {"success-rate": SUCCESS_RATE, "again": template("again", [prometheus("success-rate")])},
            "templates[1]",
            "metric 'success-rate' is also defined by templates[0]",
            id="duplicate-metric-names",
        ),
        pytest.param(
            {"templates": [{"templateName": "a"}, {"templateName": "b"}], "args": [{"name": "x", "value": "1"}]},
            {
                "a": template("a", [prometheus("m1")], [{"name": "port", "value": "80"}]),
                "b": template("b", [prometheus("m2")], [{"name": "port", "value": "8080"}]),
            },
            "templates[1].args.port",
            "declared with different values by two templates: '80' and '8080'",
            id="conflicting-arg-values",
        ),
        pytest.param(
            {"templates": [{"templateName": "u"}]},
            {"u": template("u", [prometheus("m", "{{args.nope}}")])},
            "metrics.m",
            "refers to undeclared argument 'nope'",
            id="undeclared-placeholder",
        ),
        pytest.param(
            {
                "templates": [{"templateName": "success-rate"}],
                "args": [{"name": "service-name", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}}],
            },
            None,
            "args[0] (service-name)",
            "the rollout has no 'nope' there",
            id="field-ref-missing",
        ),
        pytest.param(
            {"templates": [{"templateName": "c", "clusterScope": True}]},
            None,
            "templates[0]",
            "ClusterAnalysisTemplate 'c' not found",
            id="cluster-template-missing",
        ),
    ],
)
def test_problems_name_the_field(
    analysis: dict[str, Any], templates: dict[str, AnalysisTemplate] | None, field: str, message: str
) -> None:
    problem = resolve(analysis, templates)

    assert isinstance(problem, TemplateError)
    assert problem.field == field
    assert message in problem.message


def test_same_arg_with_same_value_in_two_templates_is_fine() -> None:
    templates = {
        "a": template("a", [prometheus("m1")], [{"name": "port", "value": "80"}]),
        "b": template("b", [prometheus("m2")], [{"name": "port", "value": "80"}]),
    }

    assert isinstance(
        resolve({"templates": [{"templateName": "a"}, {"templateName": "b"}]}, templates), AnalysisRunSpec
    )


def test_stable_hash_needs_a_stable_revision() -> None:
    problem = resolve(
        {
            "templates": [{"templateName": "success-rate"}],
            "args": [{"name": "service-name", "valueFrom": {"podTemplateHashValue": "Stable"}}],
        },
        stable_hash=None,
    )

    assert isinstance(problem, TemplateError) and "no stable revision" in problem.message


def test_cluster_templates_and_field_refs() -> None:
    cluster = ClusterAnalysisTemplate.model_validate(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ClusterAnalysisTemplate",
            "metadata": {"name": "shared"},
            "spec": {"metrics": [prometheus("m", "{{args.app}}")], "args": [{"name": "app"}]},
        }
    )
    spec = resolve(
        {
            "templates": [{"templateName": "shared", "clusterScope": True}],
            "args": [{"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        },
        cluster_templates={"shared": cluster},
    )

    assert isinstance(spec, AnalysisRunSpec)
    assert spec.metrics[0].provider.prometheus is not None
    assert spec.metrics[0].provider.prometheus.query == ROLLOUT.metadata.name


def test_secret_args_stay_placeholders_in_the_run() -> None:
    templates = {
        "web": template(
            "web",
            [
                {
                    "name": "w",
                    "provider": {"web": {"url": "http://x", "headers": [{"key": "A", "value": "{{args.token}}"}]}},
                }
            ],
            [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
        )
    }

    spec = resolve({"templates": [{"templateName": "web"}]}, templates)

    assert isinstance(spec, AnalysisRunSpec)
    assert spec.metrics[0].provider.web is not None
    assert spec.metrics[0].provider.web.headers[0].value == "{{args.token}}"
    assert spec.args[0].value is None and spec.args[0].value_from is not None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "web"),
        ("metadata.labels['app']", "web"),
        ('metadata.labels["app"]', "web"),
        ("spec.replicas", "3"),
        ("spec.template.spec.containers[0].name", "app"),
    ],
)
def test_field_paths(path: str, expected: str) -> None:
    document = {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app"}]}}},
    }

    assert field_path(document, path) == expected


def test_substitution_reaches_nested_strings_and_keeps_unknown_placeholders() -> None:
    value = {"a": ["{{args.x}}-{{ args.y }}", 3], "b": "{{args.z}}"}

    assert substitute(value, {"x": "1", "y": "2"}) == {"a": ["1-2", 3], "b": "{{args.z}}"}


def test_arguments_that_would_fill_a_metric_beyond_the_limit_are_an_error_not_built() -> None:
    """One 10-byte placeholder stands for a whole value: repeated, it multiplied a manifest's size in memory
    (50,000 of them over a 400 KB value: 20 GB). Here 5,000 over 1 KB: 5 MB, past the 4 MB limit."""
    metric = Metric.model_validate(
        {"name": "q", "provider": {"prometheus": {"address": "http://p", "query": "{{args.x}}" * 5_000}}}
    )
    refused = resolve_metric(metric, {"x": "a" * 1_000})
    assert refused == TemplateError(
        "metrics.q",
        "invalid once arguments are filled in: the arguments filled in make more than 4194304 characters of text",
    )
    filled = resolve_metric(metric, {"x": "a" * 100})
    assert isinstance(filled, Metric) and filled.provider.prometheus is not None
    assert filled.provider.prometheus.query == "a" * 500_000
