"""Conditions as Argo's docs write them, evaluated by CEL; hostile conditions refused or bounded.

The ``argo-doc-*`` rows are conditions copied from Argo Rollouts' analysis docs (``docs/features/analysis.md``
and the provider pages); ``expr-*`` rows use expr-only syntax the compatibility layer translates.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from headway.core.conditions import (
    MAX_SOURCE,
    Compiled,
    CompileError,
    EvaluationError,
    check_condition,
    compile_condition,
    evaluate,
    lint_conditions,
    translate,
)
from headway.spec.load import load_text


def holds(text: str, result: object) -> bool | EvaluationError:
    compiled = compile_condition(text)
    assert isinstance(compiled, Compiled), compiled
    return evaluate(compiled, result)


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        pytest.param("result[0] >= 0.95", [0.97], True, id="argo-doc-vector-index"),
        pytest.param("result[0] >= 0.95", [0.90], False, id="argo-doc-vector-index-false"),
        pytest.param("result >= 0.95", 0.97, True, id="argo-doc-scalar"),
        pytest.param("result >= 0.95", [0.97], True, id="argo-doc-scalar-on-one-sample-vector"),
        pytest.param("result <= 0.95", [0.99], False, id="argo-doc-error-rate"),
        pytest.param("result >= 10", 12, True, id="argo-doc-failure-total-errors"),
        pytest.param("len(result) > 0 && result[0] < 0.01", [], False, id="argo-doc-len-guard-empty"),
        pytest.param("len(result) > 0 && result[0] < 0.01", [0.001], True, id="argo-doc-len-guard"),
        pytest.param("result == 'true'", "true", True, id="argo-doc-web-string"),
        pytest.param(
            "result.ok && result.successPercent >= 0.90", {"ok": True, "successPercent": 0.95}, True, id="web-json"
        ),
        pytest.param("isNaN(result)", math.nan, True, id="argo-doc-isnan"),
        pytest.param("isNaN(result[0])", [0.5], False, id="argo-doc-isnan-false"),
        pytest.param("isInf(result[0])", [math.inf], True, id="isinf"),
        pytest.param("asFloat(result) >= 0.95", "0.97", True, id="argo-doc-asfloat"),
        pytest.param("asInt(result) == 3", "3", True, id="asint"),
        pytest.param("asInt(result) % 2 == 0", 4, True, id="asint-modulo"),
        pytest.param("default(result, 0) >= 0.5", None, False, id="argo-doc-default-nil"),
        pytest.param("default(result, 0) >= 0.5", 0.7, True, id="argo-doc-default-value"),
        pytest.param("result[0] * 100 > 95", [0.97], True, id="expr-int-literal-arithmetic"),
        pytest.param("100 * result[0] > 95", [0.97], True, id="expr-int-literal-left"),
        pytest.param("result[0] > 0.5 and result[1] < 0.5", [0.7, 0.1], True, id="expr-and"),
        pytest.param("result[0] > 0.9 or result[1] < 0.5", [0.7, 0.1], True, id="expr-or"),
        pytest.param("not (result > 1)", 0.5, True, id="expr-not"),
        pytest.param("result == nil", None, True, id="expr-nil"),
        pytest.param("result > -1", 0, True, id="negative-literal"),
        pytest.param("result.p99 < 300", {"p99": 250}, True, id="int-result-vs-int-literal"),
        pytest.param("result.count * 2 > 5", {"count": 3}, True, id="int-result-arithmetic"),
        pytest.param("result.all(x, x < 0.5)", [0.1, 0.2], True, id="cel-macro"),
        pytest.param("'and' in result", ["and"], True, id="keywords-in-strings-untouched"),
    ],
)
def test_argo_conditions_work_unchanged(text: str, result: object, expected: bool) -> None:
    assert holds(text, result) is expected


def test_the_compatibility_layer_rewrites_tokens_not_strings_or_fields() -> None:
    cel, _ = translate("result.and > 1 and not (x == 'or nil') or nil == len(result)")

    assert cel == "result.and>1&&!(x=='or nil')||null==size(result)"


@pytest.mark.parametrize(
    ("text", "result", "message"),
    [
        pytest.param("result.missing > 1", {}, "Key not found in map", id="missing-key"),
        pytest.param("result[3] > 1", [1.0], "index", id="index-out-of-range"),
        pytest.param("result > 1", "text", "No matching overloads", id="type-mismatch"),
        pytest.param("result", 1.0, "must be true or false", id="not-a-bool"),
        pytest.param("asFloat(result) > 1", "abc", "could not convert", id="asfloat-bad-string"),
        pytest.param("result > 1", list(range(20_000)), "more than 2000 values", id="result-too-many-values"),
        pytest.param("size(result) > 1", "x" * 70_000, "characters of text", id="result-too-long"),
        pytest.param("result > 1", 10**400, "integer too large", id="result-int-beyond-a-double"),
        pytest.param("result[0] > 1", [10**400], "integer too large", id="result-vector-int-beyond-a-double"),
        pytest.param("result.a > 1", {"a": 10**5000}, "integer too large", id="result-field-int-beyond-a-double"),
    ],
)
def test_an_undecidable_condition_is_an_evaluation_error(text: str, result: object, message: str) -> None:
    outcome = holds(text, result)

    assert isinstance(outcome, EvaluationError)
    assert message.lower() in outcome.message.lower()


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        pytest.param("result[0] >=", "Syntax error", 12, id="syntax"),
        pytest.param("foo(result) > 1", "undeclared reference to 'foo'", 3, id="unknown-function"),
        pytest.param("result > 1 and bogus", "undeclared reference to 'bogus'", 15, id="position-after-rewrite"),
        pytest.param("", "empty", None, id="empty"),
    ],
)
def test_compile_errors_carry_the_position_in_the_users_text(text: str, message: str, position: int | None) -> None:
    compiled = compile_condition(text)

    assert isinstance(compiled, CompileError)
    assert message in compiled.message
    assert compiled.position == position


def test_check_condition_is_the_lint_hook() -> None:
    assert check_condition("result[0] >= 0.95") is None
    assert check_condition("result[0] >=") == (
        "Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', "
        "NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} at position 12"
    )


def test_compiled_programs_are_cached_by_text() -> None:
    assert compile_condition("result[0] > 0.5") is compile_condition("result[0] > 0.5")


LIST = "[" + ",".join(["1"] * 100) + "]"
HOSTILE: list[Any] = [
    pytest.param("(" * 200 + "1" + ")" * 200 + " > 0", None, id="deep-parentheses"),
    pytest.param("!" * 300 + "true", None, id="deep-negation"),
    pytest.param("1" + "+1" * 400 + " > 0", None, id="long-addition-chain"),
    pytest.param("result" + "[0]" * 100 + " > 0", [[0]], id="deep-indexing"),
    pytest.param(f"{LIST}.all(a, {LIST}.all(b, a == b))", None, id="nested-comprehension"),
    pytest.param(f"{LIST}.map(a, {LIST}).size() > 0", None, id="comprehension-building-lists"),
    pytest.param("result.map(a, result).size() > 0", list(range(2000)), id="comprehension-reading-result"),
    pytest.param("result.all(x, x >= 0)", list(range(2000)), id="comprehension-over-large-result"),
    pytest.param("result.map(x, x * 2.0).size() > 0", list(range(2000)), id="map-over-large-result"),
    pytest.param("'" + "a" * 2000 + "' == result", "a", id="huge-string-literal"),
    pytest.param("result.__class__ == 1", 1, id="attribute-escape"),
    pytest.param("result.__globals__['os']", {}, id="dunder-lookup"),
]


@pytest.mark.parametrize(("text", "result"), HOSTILE)
def test_hostile_conditions_are_refused_or_bounded(text: str, result: object) -> None:
    start = time.perf_counter()
    compiled = compile_condition(text)
    outcome = evaluate(compiled, result) if isinstance(compiled, Compiled) else compiled
    elapsed = time.perf_counter() - start

    assert isinstance(outcome, CompileError | EvaluationError | bool)
    # The brief is 10 ms; allow generous headroom for a loaded CI machine (measured: well under 10 ms).
    assert elapsed < 0.1, f"{elapsed * 1000:.1f} ms"


def test_source_length_is_capped() -> None:
    compiled = compile_condition("result > 0 && " * (MAX_SOURCE // 10))

    assert isinstance(compiled, CompileError)
    assert "characters long" in compiled.message


def test_lint_reports_conditions_that_do_not_compile_with_their_field() -> None:
    text = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rates}
spec:
  args: [{name: threshold}]
  metrics:
  - name: ok
    successCondition: result[0] >= 0.95
    provider: {prometheus: {query: up}}
  - name: broken
    successCondition: result[0] >=
    failureCondition: result[0] < {{args.threshold}}
    provider: {prometheus: {query: up}}
"""
    documents = load_text(text, "t.yaml")

    [problem] = lint_conditions(documents)

    assert (problem.kind, problem.name, problem.path) == (
        "AnalysisTemplate",
        "rates",
        "spec.metrics[1].successCondition",
    )
    assert problem.message.startswith("Syntax error") and problem.message.endswith("at position 12")
    assert problem.line == 12


def test_a_lone_surrogate_is_a_compile_error_not_a_type_error() -> None:
    """cel-expr-python takes UTF-8 text: a lone surrogate raised TypeError from compile() before."""
    compiled = compile_condition("result == '\ud800'")

    assert compiled == CompileError("U+D800 is not a valid character", 11)
    assert check_condition("result[0] > 1 || result == '\udfff'") == "U+DFFF is not a valid character at position 28"
