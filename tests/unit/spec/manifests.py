"""Small manifest builders shared by the spec tests: valid by default, changed one field at a time."""

from __future__ import annotations

from typing import Any

import yaml

from headway.spec.load import load_text
from headway.spec.validate import validate

FILE = "rollout.yaml"


def rollout(name: str = "web", **strategy: Any) -> dict[str, Any]:
    """A valid Rollout; `strategy` replaces the default canary strategy (e.g. ``blueGreen={...}``)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]},
            },
            "strategy": strategy or {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def canary(**fields: Any) -> dict[str, Any]:
    """A Rollout whose canary strategy has exactly `fields`."""
    return rollout(canary=fields)


def routed(**fields: Any) -> dict[str, Any]:
    """A canary with traffic routing (istio), canary and stable services, plus `fields`."""
    base: dict[str, Any] = {
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
    }
    return canary(**(base | fields))


def template(name: str = "rate", *, args: list[Any] | None = None, **metric: Any) -> dict[str, Any]:
    """An AnalysisTemplate with one prometheus metric (fields of `metric` override the defaults)."""
    spec: dict[str, Any] = {
        "metrics": [
            {
                "name": "error-rate",
                "successCondition": "result[0] < 0.01",
                "provider": {"prometheus": {"address": "http://prom:9090", "query": "up"}},
            }
            | metric
        ]
    }
    if args is not None:
        spec["args"] = args
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }


def dump(*documents: Any) -> str:
    """Documents as one multi-document YAML text, in the given key order."""
    return yaml.safe_dump_all(documents, sort_keys=False)


def lint(*documents: Any, file: str = FILE) -> list[str]:
    """Rendered problems (field and cross-document) of `documents` written as one file."""
    loaded = load_text(dump(*documents), file)
    problems = [problem for document in loaded for problem in document.problems]
    problems += validate(loaded)
    return [problem.render() for problem in problems]


def lint_text(text: str, file: str = FILE) -> list[str]:
    """Rendered problems of a YAML text as written (for YAML-level cases)."""
    loaded = load_text(text, file)
    problems = [problem for document in loaded for problem in document.problems]
    problems += validate(loaded)
    return [problem.render() for problem in problems]
