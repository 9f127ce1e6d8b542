"""Hostile YAML gets one clear problem, in bounded time and memory, never a traceback (issue #11, manifests).

Every case here was a hang, a gigabyte or a traceback before the loader counted while it parsed. The time and
memory bounds are asserted with tracemalloc in-process; `tests/unit/cli/test_hostile_inputs.py` checks the
same inputs through the real CLI under an address-space limit.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import pytest

from headway.spec.load import Document, Limits, SpecError, load_text, load_yaml
from headway.spec.rollout import Rollout
from tests.unit.spec.manifests import canary, dump, lint_text, rollout

MB = 1024 * 1024
T = TypeVar("T")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs shape: each level lists the previous one `width` times (about 300 bytes)."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"a: &a [{','.join(['x'] * width)}]"]
    for previous, name in itertools.pairwise(names[:levels]):
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * width)}]")
    return "\n".join(lines) + "\n"


def within(work: Callable[[], T], seconds: float = 2.0, megabytes: float = 256.0) -> T:
    """The result of `work`, failing when it takes more CPU time, or allocates more (peak Python heap), than
    allowed.

    CPU time, not wall time: the machine is shared, and a busy neighbour must not fail the test. tracemalloc
    slows Python several times over, so the time is taken in a run of its own, before the memory is."""
    start = time.process_time()
    result = work()
    elapsed = time.process_time() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s of CPU"
    tracemalloc.start()
    try:
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < megabytes * MB, f"peaked at {peak / MB:.0f} MB"
    return result


def only_problem(documents: list[Document]) -> str:
    problems = [problem for document in documents for problem in document.problems]
    assert len(problems) == 1, [problem.render() for problem in problems]
    return problems[0].render()


# --- limits, enforced while parsing --------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_while_it_is_parsed_naming_the_limit_and_how_to_raise_it() -> None:
    text = alias_bomb()
    assert len(text) < 350
    message = only_problem(within(lambda: load_text(text, "bomb.yaml"), seconds=1.0, megabytes=32))
    assert message.startswith("bomb.yaml: more than 50000 YAML nodes (an alias counts as a copy of what it names)")
    assert "HEADWAY_MAX_MANIFEST_NODES" in message


def test_a_merge_key_bomb_is_refused_too() -> None:
    lines = ["a: &a {x0: 1, x1: 1, x2: 1, x3: 1, x4: 1, x5: 1, x6: 1, x7: 1, x8: 1, x9: 1}"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        merges = ", ".join(f"{previous}{i}: *{previous}" for i in range(10))
        lines.append(f"{name}: &{name} {{{merges}}}")
    text = "\n".join(lines)
    assert "more than 50000 YAML nodes" in only_problem(within(lambda: load_text(text, "bomb.yaml"), megabytes=32))


def test_too_many_documents_are_refused_at_the_first_one_over() -> None:
    text = "---\n" * 500_000
    message = only_problem(within(lambda: load_text(text, "docs.yaml", Limits(max_bytes=4 * MB))))
    assert message == (
        "docs.yaml: more than 1000 documents at line 1001: over the limit (documents = 1000; "
        "set HEADWAY_MAX_MANIFEST_DOCUMENTS to raise it if this input is genuine)"
    )


def test_an_input_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    keys = "".join(f"    k{i:06d}: v{i:05d}\n" for i in range(300_000))  # 5.8 MB, 300k keys
    text = dump(rollout()).replace("metadata:\n", "metadata:\n  labels:\n" + keys, 1)
    message = only_problem(within(lambda: load_text(text, "big.yaml"), seconds=1.0, megabytes=64))
    assert message.startswith("big.yaml: the input is 62")
    assert "over the limit (bytes = 1048576; set HEADWAY_MAX_MANIFEST_BYTES" in message


@pytest.mark.parametrize("flow", [True, False], ids=["flow", "block"])
def test_deep_nesting_is_refused_with_the_line_instead_of_a_recursion_error(flow: bool) -> None:
    if flow:
        text = "a: " + "[" * 600 + "]" * 600 + "\n"
    else:
        text = "".join("  " * i + f"k{i}:\n" for i in range(600)) + "  " * 600 + "v: 1\n"
    message = only_problem(within(lambda: load_text(text, "deep.yaml")))
    assert message.startswith("deep.yaml: nesting deeper than 64 levels at line ")
    assert "HEADWAY_MAX_MANIFEST_DEPTH" in message


def test_many_aliases_are_refused() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
    assert "more than 1000 aliases" in only_problem(load_text(text, "x.yaml"))


def test_limits_come_from_the_environment_and_bad_values_are_named() -> None:
    limits = Limits.from_environment({"HEADWAY_MAX_MANIFEST_NODES": "2_000_000", "HEADWAY_MAX_MANIFEST_DEPTH": ""})
    assert limits.max_nodes == 2_000_000
    assert limits.max_depth == Limits().max_depth
    with pytest.raises(ValueError, match="HEADWAY_MAX_MANIFEST_BYTES=lots: expected a positive integer"):
        Limits.from_environment({"HEADWAY_MAX_MANIFEST_BYTES": "lots"})


def test_a_raised_limit_lets_a_genuine_big_input_through() -> None:
    labels = {f"k{i}": "v" for i in range(30_000)}
    manifest = rollout()
    manifest["metadata"]["labels"] = labels
    text = dump(manifest)
    assert "more than 50000 YAML nodes" in only_problem(load_text(text, "big.yaml"))
    [document] = load_text(text, "big.yaml", Limits(max_nodes=100_000))
    assert isinstance(document.model, Rollout)
    assert len(document.model.metadata.labels) == 30_000


def test_the_biggest_honest_input_within_the_limits_loads_in_bounded_time_and_memory() -> None:
    """About 49,000 nodes: the most an input can hold without hitting a limit."""
    labels = {f"k{i:05d}": f"v{i:05d}" for i in range(24_000)}
    manifest = rollout()
    manifest["metadata"]["labels"] = labels
    text = dump(manifest)
    [document] = within(lambda: load_text(text, "big.yaml"))
    assert document.problems == ()


# --- tracebacks that became problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("kind: Rollout\x00\n", "line 1, column 14: character U+0000 is not allowed", id="nul"),
        pytest.param("a: 1\nb: \x1b[31m\n", "line 2, column 4: character U+001B is not allowed", id="escape"),
        pytest.param("a: \ud800\n", "line 1, column 4: character U+D800 is not allowed", id="lone-surrogate"),
        pytest.param('a: "\\ud800"\n', "line 1, column", id="escaped-surrogate"),
        pytest.param("a: " + "9" * 5000 + "\n", "an integer of 5000 digits is too large", id="huge-int"),
        pytest.param("a: 1" + ":1" * 300 + ".5\n", "a number too large for a float", id="base-60-float"),
        pytest.param("a: !!python/object:os.system x\n", "could not determine a constructor", id="python-tag"),
        pytest.param("? [a]\n: b\n", "found unhashable key", id="unhashable-key"),
    ],
)
def test_bad_characters_and_values_are_problems_with_a_line_not_tracebacks(text: str, expected: str) -> None:
    message = only_problem(load_text(text, "x.yaml"))
    assert message.startswith("x.yaml: invalid YAML at line "), message
    assert expected in message


def test_a_kind_that_is_a_list_is_a_field_error() -> None:
    text = "apiVersion: argoproj.io/v1alpha1\nkind: [Rollout]\nmetadata: {name: web}\n"
    assert lint_text(text) == [
        "rollout.yaml: document 1: kind: expected a string, got a list "
        "(one of Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, Experiment)"
    ]


def test_an_api_version_that_is_a_mapping_is_a_field_error() -> None:
    text = "apiVersion: {a: 1}\nkind: Rollout\nmetadata: {name: web}\n"
    assert lint_text(text)[0].startswith("rollout.yaml: Rollout/web: apiVersion: expected a string, got a mapping")


def test_a_tab_is_named_in_the_message() -> None:
    assert lint_text("kind: Rollout\nspec:\n\tstrategy: {}\n") == [
        "rollout.yaml: invalid YAML at line 3, column 1: found character '\\t' that cannot start any token"
    ]


# --- what plain YAML loaders and kubectl accept -----------------------------------------------------------------


def test_merge_keys_are_merged_and_explicit_keys_win_without_a_duplicate_warning() -> None:
    text = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  labels: &labels {app: web, tier: front}
spec:
  replicas: 3
  selector: {matchLabels: *labels}
  template:
    metadata:
      labels:
        <<: *labels
        tier: back
        version: v1
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
  strategy: {canary: {steps: [{setWeight: 50}, {pause: {}}]}}
"""
    documents = load_text(text, "rollout.yaml")
    assert [problem.render() for document in documents for problem in document.problems] == []
    [model] = [document.model for document in documents if document.model is not None]
    assert isinstance(model, Rollout)
    assert model.spec.template is not None
    assert model.spec.template["metadata"]["labels"] == {"app": "web", "tier": "back", "version": "v1"}


def test_timestamps_stay_strings_as_kubernetes_reads_them() -> None:
    text = dump(rollout()).replace("name: web\n", "name: web\n  annotations:\n    deployed: 2024-01-01\n", 1)
    [document] = load_text(text, "rollout.yaml")
    assert document.problems == ()
    assert isinstance(document.model, Rollout)
    assert document.model.metadata.annotations == {"deployed": "2024-01-01"}


def test_a_timestamp_where_a_number_belongs_reads_as_the_text_the_user_wrote() -> None:
    text = dump(canary(steps=[{"setWeight": 50}])).replace("setWeight: 50", "setWeight: 2024-01-01 10:00:00")
    assert lint_text(text) == [
        'rollout.yaml: Rollout/web: spec.strategy.canary.steps[0].setWeight: "2024-01-01 10:00:00" is not an integer'
    ]


def test_config_files_use_the_same_loader_and_limits() -> None:
    assert load_yaml("a: 1\n---\n") == [{"a": 1}, None]
    with pytest.raises(SpecError, match="more than 50000 YAML nodes"):
        load_yaml(alias_bomb(), "notify.yaml")
    with pytest.raises(SpecError, match="character U\\+0000 is not allowed"):
        load_yaml("a: \x00", "notify.yaml")


def test_the_loader_is_fast_for_honest_files() -> None:
    """libyaml parses; the counting composer and the constructor are Python (about 1 s/MB on this machine)."""
    text = dump(*[rollout(f"web{i}") for i in range(300)])
    documents = within(lambda: load_text(text, "many.yaml"), seconds=1.0)
    assert len(documents) == 300 and all(document.model is not None for document in documents)


@pytest.mark.parametrize(
    "text",
    [
        "spec: &s\n  x: *s\n",  # a mapping holding itself
        "spec: &s\n  - *s\n",  # a list holding itself
        "a: &x\n  <<: *x\n",  # a merge of itself
        "a: &x [1, {b: *x}]\n",  # deeper inside
    ],
    ids=["mapping", "sequence", "merge", "nested"],
)
def test_a_recursive_alias_is_an_error_at_its_place_not_a_recursion(text: str) -> None:
    documents = load_text("apiVersion: headway.dev/v1alpha1\nkind: Rollout\nmetadata: {name: web}\n" + text)
    [problem] = [problem for document in documents for problem in document.problems]
    assert "refers to the node it is inside" in problem.message
    assert problem.line is not None and problem.line >= 4


def test_thousands_of_duplicate_keys_are_each_located_in_bounded_time() -> None:
    """Each duplicate used to be located by a scan of every line of the file: 12,000 took seconds."""
    labels = "".join(f"    k{i:05d}: v\n" for i in range(12_000)) * 2
    text = dump(rollout()).replace("metadata:\n", "metadata:\n  labels:\n" + labels, 1)
    [document] = within(lambda: load_text(text, "dup.yaml"), seconds=1.0)
    duplicates = [problem for problem in document.problems if problem.message.startswith("duplicate key")]
    assert len(duplicates) == 12_000
    assert duplicates[-1].path == "metadata.labels.k11999"
    assert duplicates[-1].line == text.splitlines().index("    k11999: v", 20_000) + 1


def test_thousands_of_bad_steps_each_with_an_unknown_key_are_reported_in_bounded_time() -> None:
    """Each unknown key used to be checked against every error of the document: 12,000 misspelt steps took
    over six seconds."""
    text = dump(canary(steps=[{"setWeigth": 10} for _ in range(12_000)]))
    [document] = within(lambda: load_text(text, "steps.yaml"), seconds=3.5)
    step = "spec.strategy.canary.steps[11999]"
    last = [problem for problem in document.problems if problem.path.startswith(step)]
    assert [(problem.path, problem.message.split(" (")[0]) for problem in last] == [
        (
            step,
            "set exactly one of setWeight, pause, analysis, experiment, setHeaderRoute, setMirrorRoute, plugin "
            "in a step, or setCanaryScale",
        ),
        (f"{step}.setWeigth", "unknown field"),
    ]
