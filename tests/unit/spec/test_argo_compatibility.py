"""Argo Rollouts' own example manifests and our examples/ must lint clean (see tests/data/argo/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.spec.load import load_text
from headway.spec.validate import validate

ROOT = Path(__file__).resolve().parents[3]
ARGO = ROOT / "tests" / "data" / "argo"
EXAMPLES = ROOT / "examples"


def problems(*paths: Path) -> list[str]:
    documents = [document for path in paths for document in load_text(path.read_text(), path.name)]
    found = [problem for document in documents for problem in document.problems] + validate(documents)
    return [problem.render() for problem in found]


def test_there_are_a_dozen_argo_manifests() -> None:
    assert len(list(ARGO.glob("*.yaml"))) >= 12


BAD_NAME = "docs-analysis-run-multiple-templates.yaml"
"""A documentation snippet whose placeholder name (``guestbook-CurrentPodHash-…``) the API server would refuse."""


@pytest.mark.parametrize("path", sorted(set(ARGO.glob("*.yaml")) - {ARGO / BAD_NAME}), ids=lambda path: path.name)
def test_each_argo_manifest_lints_clean(path: Path) -> None:
    assert problems(path) == []
    assert any(document.model is not None for document in load_text(path.read_text(), path.name))


def test_a_name_kubernetes_would_refuse_is_refused_with_the_rule() -> None:
    """Kubernetes refuses upper case in metadata.name (DNS-1123 subdomain); so does Headway, naming the rule."""
    assert problems(ARGO / BAD_NAME) == [
        f"{BAD_NAME}: AnalysisRun/guestbook-CurrentPodHash-multiple-templates: metadata.name: "
        "'guestbook-CurrentPodHash-multiple-templates' is not a valid name: it must be a lowercase RFC 1123 "
        "subdomain: at most 253 characters, lower case letters, digits, '-' and '.', starting and ending with a "
        "letter or digit (e.g. 'web' or 'web.v2')"
    ]


def test_argo_examples_with_their_templates_lint_clean() -> None:
    names = [
        "analysis-templates.yaml",
        "cluster-analysis-templates.yaml",
        "rollout-background-analysis.yaml",
        "experiment-with-analysis.yaml",
        "rollout-experiment-step.yaml",
    ]
    assert problems(*(ARGO / name for name in names)) == []


def test_argos_inline_step_example_runs_a_template_that_never_ends() -> None:
    """Argo's own reference validation rejects this pair too (an inline analysis must have an end)."""
    names = ["analysis-templates.yaml", "cluster-analysis-templates.yaml", "rollout-analysis-step.yaml"]
    assert problems(*(ARGO / name for name in names)) == [
        "rollout-analysis-step.yaml: Rollout/rollout-analysis-step: spec.strategy.canary.steps[1].analysis: "
        "AnalysisTemplate 'random-fail' has metric 'random-fail' which runs indefinitely (interval without "
        "count); set count, or use it as background analysis"
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_each_example_lints_clean(path: Path) -> None:
    assert problems(path) == []


def test_all_examples_together_lint_clean() -> None:
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) >= 4
    assert problems(*paths) == []
