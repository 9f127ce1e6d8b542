"""CustomResourceDefinitions generated from the spec models, with structural schemas an API server accepts.

pydantic's JSON Schema is not a Kubernetes structural schema (DEPENDENCIES.md §8): it uses ``$ref``, ``anyOf`` for
Optional and unions, nodes without ``type``, and ``additionalProperties: false`` next to ``properties``. The
converter below inlines refs, turns Optional into ``nullable``, ``int | str`` into ``x-kubernetes-int-or-string``,
merges unions of objects into one set of properties, marks free-form values ``x-kubernetes-preserve-unknown-fields``
and drops what a structural schema may not carry (titles, defaults, ``additionalProperties`` next to properties).
Status schemas keep unknown fields, so a newer controller's status survives an older CRD.

``python -m headway.runtimes.kubernetes.crds [--group argoproj.io]`` prints the CRDs as YAML; deploy/crds is that
output, kept current by a test.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from headway.spec.analysis import AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec
from headway.spec.experiment import ExperimentSpec, ExperimentStatus
from headway.spec.rollout import RolloutSpec
from headway.spec.status import RolloutStatus

Schema = dict[str, Any]
PRESERVE = "x-kubernetes-preserve-unknown-fields"
_KEPT = ("type", "format", "enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern")


def structural(schema: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Schema:
    """One pydantic JSON-Schema node as a structural OpenAPI v3 node."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        if name in seen:  # a recursive model: stop, keep whatever is there
            return {"type": "object", PRESERVE: True}
        merged = {**defs[name], **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs, (*seen, name))
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return structural({**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}, defs, seen)
    if "anyOf" in schema or "oneOf" in schema:
        return _union(schema.get("anyOf") or schema.get("oneOf") or [], defs, seen)
    if "const" in schema:
        return {"type": _json_type(schema["const"]), "enum": [schema["const"]]}
    kind = schema.get("type")
    if kind is None:
        return {PRESERVE: True}
    node: Schema = {key: schema[key] for key in _KEPT if key in schema}
    if "description" in schema:
        node["description"] = str(schema["description"]).strip()
    if kind == "array":
        node["items"] = structural(schema.get("items") or {}, defs, seen)
    elif kind == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties:
            node["properties"] = {name: structural(sub, defs, seen) for name, sub in properties.items()}
            if schema.get("required"):
                node["required"] = list(schema["required"])
        elif isinstance(extra, Mapping) and extra:
            node["additionalProperties"] = structural(extra, defs, seen)
        else:
            node[PRESERVE] = True
    if "exclusiveMinimum" in schema:
        node["minimum"], node["exclusiveMinimum"] = schema["exclusiveMinimum"], True
    if "exclusiveMaximum" in schema:
        node["maximum"], node["exclusiveMaximum"] = schema["exclusiveMaximum"], True
    return node


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value), "object")


def _union(members: list[Mapping[str, Any]], defs: Mapping[str, Any], seen: tuple[str, ...]) -> Schema:
    nullable = any(member.get("type") == "null" for member in members)
    options = [structural(member, defs, seen) for member in members if member.get("type") != "null"]
    types = {option.get("type") for option in options}
    if len(options) == 1:
        node = options[0]
    elif types <= {"integer", "string"} and types:
        node = {"x-kubernetes-int-or-string": True}
    elif types == {"object"}:
        properties: Schema = {}
        for option in options:
            properties.update(option.get("properties") or {})
        node = {"type": "object", "properties": properties} if properties else {"type": "object", PRESERVE: True}
    elif types == {"number", "integer"}:
        node = {"type": "number"}
    else:
        node = {PRESERVE: True}
    if nullable:
        node = {**node, "nullable": True}
    return node


def model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True)
    return structural(raw, raw.get("$defs", {}))


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel] | None
    scope: str = "Namespaced"
    scale: bool = False
    columns: tuple[tuple[str, str, str], ...] = ()


_AGE = ("Age", "date", ".metadata.creationTimestamp")
KINDS = (
    Kind(
        "Rollout",
        "rollouts",
        ("ro",),
        RolloutSpec,
        RolloutStatus,
        scale=True,
        columns=(
            ("Desired", "integer", ".spec.replicas"),
            ("Current", "integer", ".status.replicas"),
            ("Up-to-date", "integer", ".status.updatedReplicas"),
            ("Available", "integer", ".status.availableReplicas"),
            ("Phase", "string", ".status.phase"),
            _AGE,
        ),
    ),
    Kind("AnalysisTemplate", "analysistemplates", ("at",), AnalysisTemplateSpec, None, columns=(_AGE,)),
    Kind(
        "ClusterAnalysisTemplate",
        "clusteranalysistemplates",
        ("cat",),
        AnalysisTemplateSpec,
        None,
        scope="Cluster",
        columns=(_AGE,),
    ),
    Kind(
        "AnalysisRun",
        "analysisruns",
        ("ar",),
        AnalysisRunSpec,
        AnalysisRunStatus,
        columns=(("Status", "string", ".status.phase"), _AGE),
    ),
    Kind(
        "Experiment",
        "experiments",
        ("exp",),
        ExperimentSpec,
        ExperimentStatus,
        columns=(("Status", "string", ".status.phase"), _AGE),
    ),
)


def crd(kind: Kind, group: str) -> dict[str, Any]:
    """The CRD of one kind in ``group`` (v1alpha1, served and stored)."""
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": model_schema(kind.spec),
    }
    version: dict[str, Any] = {"name": "v1alpha1", "served": True, "storage": True}
    if kind.status is not None:
        properties["status"] = {**model_schema(kind.status), PRESERVE: True}
        version["subresources"] = {"status": {}}
        if kind.scale:
            version["subresources"]["scale"] = {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            }
    version["schema"] = {"openAPIV3Schema": {"type": "object", "properties": properties}}
    version["additionalPrinterColumns"] = [
        {"name": name, "type": kind_, "jsonPath": path} for name, kind_, path in kind.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
            },
            "scope": kind.scope,
            "versions": [version],
        },
    }


def crds(group: str = "headway.dev") -> list[dict[str, Any]]:
    return [crd(kind, group) for kind in KINDS]


def render(group: str = "headway.dev") -> str:
    """All CRDs as one multi-document YAML text, stable across runs."""
    header = "# Generated by `python -m headway.runtimes.kubernetes.crds`; do not edit (tests check it is current).\n"
    return header + yaml.safe_dump_all(crds(group), sort_keys=True, width=120)


if __name__ == "__main__":  # pragma: no cover - a one-line entry point
    arguments = sys.argv[1:]
    sys.stdout.write(render(arguments[1] if arguments[:1] == ["--group"] and len(arguments) > 1 else "headway.dev"))
