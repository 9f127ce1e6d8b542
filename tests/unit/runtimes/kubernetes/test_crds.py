"""The generated CRDs: current in deploy/, structural, and accepting exactly what the spec models accept."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from headway.runtimes.kubernetes.crds import PRESERVE, crds, render

ROOT = Path(__file__).resolve().parents[4]
DEPLOY = ROOT / "deploy"
EXAMPLES = ROOT / "tests" / "data" / "argo"


@pytest.mark.parametrize(
    "path", [DEPLOY / "crds" / "headway.dev.yaml", DEPLOY / "helm" / "headway" / "crds" / "headway.dev.yaml"]
)
def test_the_crds_in_deploy_are_current(path: Path) -> None:
    assert path.read_text() == render(), f"regenerate: python -m headway.runtimes.kubernetes.crds > {path}"


def _nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield path, schema
        for key, value in (schema.get("properties") or {}).items():
            yield from _nodes(value, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            yield from _nodes(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schema(kind: str) -> dict[str, Any]:
    (found,) = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    schema: dict[str, Any] = found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_every_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "default"} & node.keys(), path
        assert "type" in node or node.get(PRESERVE) or node.get("x-kubernetes-int-or-string"), path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_rollouts_have_status_scale_and_printer_columns() -> None:
    (rollout,) = [c for c in crds() if c["spec"]["names"]["kind"] == "Rollout"]
    version = rollout["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert [c["name"] for c in version["additionalPrinterColumns"]][-2:] == ["Phase", "Age"]


def _documents(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == kind]
    return found


@pytest.mark.parametrize("kind", ["Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "Experiment"])
def test_the_argo_examples_validate_against_the_schema(kind: str) -> None:
    documents = _documents(kind)
    assert documents
    validator = OAS30Validator(_schema(kind))
    for document in documents:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == [], document["metadata"]["name"]


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "replicas"), "three"), (("spec", "paused"), "yes"), (("spec", "strategy", "canary", "steps"), {})],
    ids=["replicas-not-an-integer", "paused-not-a-bool", "steps-not-a-list"],
)
def test_wrong_types_are_refused(path: tuple[str, ...], value: object) -> None:
    (document,) = _documents("Rollout")[:1]
    broken = copy.deepcopy(document)
    target = broken
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value

    assert list(OAS30Validator(_schema("Rollout")).iter_errors(broken))


def test_kustomize_renders_the_base() -> None:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is required in CI")
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "base")], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds.count("CustomResourceDefinition") == 5
    assert {"ClusterRole", "Deployment", "Role", "ServiceAccount"} <= set(kinds)
