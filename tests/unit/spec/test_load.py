"""The loader: every error class rendered exactly as `headway lint` prints it."""

from __future__ import annotations

import textwrap

import pytest

from headway.spec.analysis import AnalysisTemplate
from headway.spec.load import KINDS, Problem, Severity, SpecError, load_document, load_text, parse
from headway.spec.rollout import Rollout
from tests.unit.spec.manifests import canary, dump, lint, lint_text, rollout, template

P = "rollout.yaml: Rollout/web"


def test_the_issue_example_names_file_object_path_and_range() -> None:
    manifest = canary(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 150}])
    assert lint(manifest) == [f"{P}: spec.strategy.canary.steps[2].setWeight: 150 is out of range 0..100"]


def test_a_valid_rollout_has_no_problems_and_a_model() -> None:
    [document] = load_text(dump(rollout()), "rollout.yaml")
    assert document.problems == ()
    assert isinstance(document.model, Rollout)
    assert (document.kind, document.name, document.index) == ("Rollout", "web", 1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"replicas": "abc"}, 'spec.replicas: "abc" is not an integer', id="not-an-integer"),
        pytest.param({"replicas": -1}, "spec.replicas: -1 is out of range >= 0", id="negative"),
        pytest.param({"strategy": None}, "spec.strategy: expected a mapping, got null", id="null-mapping"),
        pytest.param({"selector": ["app"]}, "spec.selector: expected a mapping, got a list", id="list-for-mapping"),
        pytest.param({"paused": "maybe"}, 'spec.paused: "maybe" is not a boolean (use true or false)', id="bool"),
        pytest.param(
            {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": "later"}},
            'spec.workloadRef.scaleDown: "later" is not one of "never", "onsuccess" or "progressively"',
            id="literal",
        ),
    ],
)
def test_field_errors_say_what_is_wrong_and_what_is_allowed(change: dict[str, object], expected: str) -> None:
    manifest = rollout()
    manifest["spec"].update(change)
    assert f"{P}: {expected}" in lint(manifest)


def test_a_missing_required_field_is_reported_at_its_own_path() -> None:
    manifest = rollout()
    del manifest["spec"]["strategy"]
    assert lint(manifest) == [f"{P}: spec.strategy: required field is missing"]


def test_a_missing_nested_field_in_a_list_item() -> None:
    manifest = template(name="t")
    del manifest["spec"]["metrics"][0]["name"]
    assert lint(manifest) == ["rollout.yaml: AnalysisTemplate/t: spec.metrics[0].name: required field is missing"]


def test_a_string_given_as_a_number_suggests_quoting() -> None:
    manifest = template(name="t", args=[{"name": "threshold", "value": 5}])
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.args[0].value: expected a string, got an integer (5) (quote it)"
    ]


def test_a_one_of_violation_lists_the_choices_without_pydantic_prefix() -> None:
    manifest = canary(steps=[{"setWeight": 10, "pause": {}}])
    [line] = lint(manifest)
    assert line.startswith(f"{P}: spec.strategy.canary.steps[0]: set exactly one of setWeight, pause, analysis, ")
    assert "Value error" not in line


def test_an_empty_name_is_not_allowed_where_argo_requires_one() -> None:
    manifest = canary(steps=[{"analysis": {"templates": [{"templateName": ""}]}}])
    assert lint(manifest) == [
        f"{P}: spec.strategy.canary.steps[0].analysis.templates[0].templateName: must not be empty"
    ]


def test_an_empty_list_where_one_item_is_required() -> None:
    manifest = canary(steps=[{"analysis": {"templates": []}}])
    assert lint(manifest) == [f"{P}: spec.strategy.canary.steps[0].analysis.templates: must have at least 1 item"]


def test_every_error_of_a_document_is_reported_not_just_the_first() -> None:
    manifest = canary(maxSurge="lots", steps=[{"setWeight": 101}, {"pause": {"duration": "soon"}}])
    assert lint(manifest) == [
        f'{P}: spec.strategy.canary.maxSurge: "lots" is not an integer or a percentage like "25%"',
        f"{P}: spec.strategy.canary.steps[0].setWeight: 101 is out of range 0..100",
        f'{P}: spec.strategy.canary.steps[1].pause.duration: "soon" is not a duration '
        "(use seconds or a string like 30s, 10m, 1h)",
    ]


# --- unknown fields ---------------------------------------------------------------------------------------------


def test_unknown_fields_are_warnings_at_any_depth_and_the_model_is_kept() -> None:
    manifest = canary(steps=[{"setWeight": 10, "color": "blue"}], surge=1)
    manifest["spec"]["template"]["spec"]["anything"] = "pod specs are not checked"
    manifest["metadata"]["generateName"] = "web-"
    [document] = load_text(dump(manifest), "rollout.yaml")
    assert [problem.render() for problem in document.problems] == [
        f"{P}: spec.strategy.canary.steps[0].color: unknown field (ignored)",
        f"{P}: spec.strategy.canary.surge: unknown field (ignored)",
    ]
    assert all(problem.severity is Severity.WARNING for problem in document.problems)
    assert document.model is not None


def test_a_misspelt_field_gets_a_suggestion_next_to_the_error_it_causes() -> None:
    manifest = canary(steps=[{"setWieght": 10}])
    lines = lint(manifest)
    assert f"{P}: spec.strategy.canary.steps[0].setWieght: unknown field (ignored); did you mean 'setWeight'?" in lines
    assert any("set exactly one of" in line for line in lines)


def test_snake_case_is_not_a_wire_name() -> None:
    manifest = template(name="t", success_condition="result > 1")
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.metrics[0].success_condition: unknown field (ignored); "
        "did you mean 'successCondition'?"
    ]


def test_unknown_fields_inside_a_provider_and_inside_lists_of_models() -> None:
    manifest = template(name="t")
    manifest["spec"]["metrics"][0]["provider"]["prometheus"]["headers"] = [{"key": "a", "value": "b", "x": 1}]
    assert lint(manifest) == [
        "rollout.yaml: AnalysisTemplate/t: spec.metrics[0].provider.prometheus.headers[0].x: unknown field (ignored)"
    ]


# --- document level ---------------------------------------------------------------------------------------------


def test_an_unsupported_api_version_names_the_allowed_ones() -> None:
    manifest = rollout()
    manifest["apiVersion"] = "argoproj.io/v1beta1"
    assert lint(manifest) == [
        f'{P}: apiVersion: "argoproj.io/v1beta1" is not supported '
        "(use one of headway.dev/v1alpha1, argoproj.io/v1alpha1)"
    ]


def test_a_headway_kind_under_a_foreign_group_is_an_error_not_skipped() -> None:
    manifest = rollout()
    manifest["apiVersion"] = "apps/v1"
    assert lint(manifest) == [
        f'{P}: apiVersion: "apps/v1" is not supported (use one of headway.dev/v1alpha1, argoproj.io/v1alpha1)'
    ]


def test_both_api_groups_are_accepted() -> None:
    for api_version in ("headway.dev/v1alpha1", "argoproj.io/v1alpha1"):
        manifest = rollout()
        manifest["apiVersion"] = api_version
        assert lint(manifest) == []


def test_an_unknown_kind_lists_the_known_ones() -> None:
    manifest = rollout()
    manifest["kind"] = "Rolout"
    assert lint(manifest) == [
        'rollout.yaml: Rolout/web: kind: "Rolout" is not a known kind '
        "(known: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, Experiment)"
    ]


def test_missing_api_version_and_kind() -> None:
    assert lint_text("metadata: {name: web}\n") == [
        "rollout.yaml: document 1: apiVersion: required field is missing "
        "(use one of headway.dev/v1alpha1, argoproj.io/v1alpha1)",
        "rollout.yaml: document 1: kind: required field is missing "
        "(one of Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, Experiment)",
    ]


def test_a_missing_name_is_an_error() -> None:
    manifest = rollout()
    manifest["metadata"] = {"labels": {"a": "b"}}
    assert lint(manifest) == ["rollout.yaml: Rollout/(unnamed): metadata.name: required field is missing"]


def test_other_kinds_next_to_the_rollout_are_skipped_silently() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": []}}
    documents = load_text(dump(service, rollout()), "app.yaml")
    assert [(d.kind, d.skipped, d.problems) for d in documents] == [("Service", True, ()), ("Rollout", False, ())]


def test_a_document_that_is_not_a_mapping() -> None:
    text = dump(rollout()) + "---\n- just\n- a list\n"
    assert lint_text(text) == ["rollout.yaml: document 2: expected a mapping (a Kubernetes object), got a list"]


def test_empty_documents_are_ignored_but_keep_their_position() -> None:
    text = "---\n---\n" + dump(rollout())
    [document] = load_text(text, "rollout.yaml")
    assert document.index == 2
    assert document.problems == ()


def test_malformed_yaml_reports_line_and_column_and_keeps_earlier_documents() -> None:
    text = dump(rollout()) + "---\nkind: Rollout\nmetadata:\n  name: [web\n"
    documents = load_text(text, "rollout.yaml")
    assert documents[0].model is not None
    [problem] = documents[1].problems
    assert problem.render() == ("rollout.yaml: invalid YAML at line 27, column 1: did not find expected ',' or ']'")
    assert problem.line == 27


def test_a_tab_indented_file() -> None:
    assert lint_text("kind: Rollout\nspec:\n\tstrategy: {}\n") == [
        "rollout.yaml: invalid YAML at line 3, column 1: found character '\\t' that cannot start any token"
    ]


def test_duplicate_keys_are_errors_at_the_repeated_key() -> None:
    text = dump(rollout()).replace("- setWeight: 50\n", "- setWeight: 50\n        setWeight: 60\n")
    assert "setWeight: 60" in text
    assert lint_text(text) == [
        f"{P}: spec.strategy.canary.steps[0].setWeight: duplicate key (only the last value is used)"
    ]


def test_problems_carry_the_line_of_the_field_or_of_its_nearest_parent() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: AnalysisTemplate
        metadata:
          name: t
        spec:
          metrics:
          - name: m
            count: many
            provider:
              prometheus: {}
        """
    )
    [document] = load_text(text, "t.yaml")
    assert [(p.path, p.line) for p in document.problems] == [
        ("spec.metrics[0].count", 8),
        ("spec.metrics[0].provider.prometheus.query", 10),
    ]


def test_multi_document_files_number_their_documents() -> None:
    documents = load_text(dump(template(), rollout()), "app.yaml")
    assert [(d.index, d.kind, d.name) for d in documents] == [(1, "AnalysisTemplate", "rate"), (2, "Rollout", "web")]
    assert isinstance(documents[0].model, AnalysisTemplate)


# --- programmatic use ---------------------------------------------------------------------------------------------


def test_parse_returns_the_model_or_raises_with_every_error() -> None:
    assert isinstance(parse(rollout()), Rollout)
    with pytest.raises(SpecError) as caught:
        parse(canary(steps=[{"setWeight": 200}, {"setWeight": -1}]), file="x.yaml")
    assert [problem.path for problem in caught.value.problems] == [
        "spec.strategy.canary.steps[0].setWeight",
        "spec.strategy.canary.steps[1].setWeight",
    ]
    assert "x.yaml: Rollout/web: spec.strategy.canary.steps[0].setWeight: 200 is out of range 0..100" in str(
        caught.value
    )


def test_parse_ignores_warnings() -> None:
    manifest = rollout()
    manifest["spec"]["extra"] = 1
    assert isinstance(parse(manifest), Rollout)


def test_load_document_accepts_decoded_data() -> None:
    document = load_document({"apiVersion": "headway.dev/v1alpha1"}, file="api")
    assert [p.render() for p in document.problems] == [
        "api: document 1: kind: required field is missing "
        "(one of Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, Experiment)"
    ]


def test_problem_rendering_and_json_form() -> None:
    problem = Problem("f.yaml", "Rollout", "web", "spec.replicas", "bad", Severity.WARNING, 2, 7)
    assert problem.render() == "f.yaml: Rollout/web: spec.replicas: bad"
    assert not problem.is_error
    assert problem.as_dict() == {
        "file": "f.yaml",
        "document": 2,
        "line": 7,
        "kind": "Rollout",
        "name": "web",
        "path": "spec.replicas",
        "severity": "warning",
        "message": "bad",
    }
    assert Problem("f.yaml", "", "", "", "no such file or directory").render() == "f.yaml: no such file or directory"


def test_the_registry_is_explicit() -> None:
    assert list(KINDS) == ["Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment"]
