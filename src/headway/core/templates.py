"""From a Rollout's analysis reference to one AnalysisRun spec: find templates, merge them, fill in arguments.

Argo's ``NewAnalysisRunFromTemplates`` and ``MergeArgs``, as pure functions: the templates' metrics are
concatenated (two metrics of one name are an error), their arguments merged (one argument declared by two
templates with different values is an error), the Rollout's arguments override template defaults, and every
argument must end with a value. ``{{args.NAME}}`` placeholders in metrics (provider fields, conditions, counts) are
substituted when the run is created, except secret arguments: those stay placeholders in the run, and the executor
resolves them at measurement time through an injected resolver, so a secret is never written into a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headway.spec.analysis import (
    AnalysisRunSpec,
    AnalysisTemplate,
    AnalysisTemplateSpec,
    Argument,
    ClusterAnalysisTemplate,
    DryRun,
    MeasurementRetention,
    Metric,
)
from headway.spec.rollout import AnalysisRunArgument, Rollout, RolloutAnalysis

_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.\-]+)\s*\}\}")
MAX_FILLED_CHARS = 4 * 1024 * 1024
"""Most characters the strings of one metric may hold once its arguments are filled in: four times the largest
manifest, so a query repeating ``{{args.x}}`` thousands of times over a long value is refused (one 10-byte
placeholder can stand for a 1 MB value) instead of being built in memory."""


@dataclass(frozen=True)
class TemplateError:
    """Why templates could not become a run; ``field`` is where to look (``templates[1]``, ``args.service-name``)."""

    field: str
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}"


Templates = Mapping[str, AnalysisTemplate]
ClusterTemplates = Mapping[str, ClusterAnalysisTemplate]


def find_template(
    name: str, *, namespace: str, cluster_scope: bool, templates: Templates, cluster_templates: ClusterTemplates
) -> AnalysisTemplateSpec | None:
    """A template by name: namespaced ones are looked up as ``namespace/name`` first, then as ``name``."""
    if cluster_scope:
        found = cluster_templates.get(name)
        return found.spec if found is not None else None
    template = templates.get(f"{namespace}/{name}") or templates.get(name)
    if template is not None and template.metadata.namespace not in (namespace, ""):
        template = None
    return template.spec if template is not None else None


def rollout_args(
    args: list[AnalysisRunArgument], rollout: Rollout, *, stable_hash: str | None, latest_hash: str
) -> dict[str, str] | TemplateError:
    """The Rollout's arguments as values: podTemplateHashValue Stable/Latest and fieldRef resolved."""
    values: dict[str, str] = {}
    for index, arg in enumerate(args):
        where = f"args[{index}] ({arg.name})"
        if arg.value is not None:
            values[arg.name] = arg.value
        elif arg.value_from is not None and arg.value_from.pod_template_hash_value is not None:
            which = arg.value_from.pod_template_hash_value
            chosen = stable_hash if which == "Stable" else latest_hash
            if chosen is None:
                return TemplateError(where, "valueFrom.podTemplateHashValue Stable: the rollout has no stable revision")
            values[arg.name] = chosen
        elif arg.value_from is not None and arg.value_from.field_ref is not None:
            found = field_path(rollout.wire(), arg.value_from.field_ref.field_path)
            if isinstance(found, TemplateError):
                return TemplateError(where, found.message)
            values[arg.name] = found
        else:
            return TemplateError(where, "set value or valueFrom")
    return values


_PATH_PART = re.compile(r"\.?([A-Za-z0-9_\-]+)|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]|\[(\d+)\]")


def field_path(document: Mapping[str, Any], path: str) -> str | TemplateError:
    """The value at a downward-API style path such as ``metadata.labels['app']`` or ``spec.replicas``."""
    node: Any = document
    position = 0
    text = path.strip()
    if not text:
        return TemplateError("fieldRef.fieldPath", "the path is empty")
    while position < len(text):
        match = _PATH_PART.match(text, position)
        if match is None:
            return TemplateError("fieldRef.fieldPath", f"cannot read {path!r} at position {position}")
        position = match.end()
        name, single, double, index = match.groups()
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return TemplateError("fieldRef.fieldPath", f"{path!r}: no item {index}")
            node = node[int(index)]
            continue
        key = name if name is not None else (single if single is not None else double)
        if not isinstance(node, Mapping) or key not in node:
            return TemplateError("fieldRef.fieldPath", f"{path!r}: the rollout has no {key!r} there")
        node = node[key]
    if isinstance(node, Mapping | list):
        return TemplateError("fieldRef.fieldPath", f"{path!r} is an object, not a value")
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def merge_templates(specs: list[AnalysisTemplateSpec]) -> AnalysisTemplateSpec | TemplateError:
    """One template from several: metrics concatenated, args merged, dryRun and retention joined."""
    metrics: list[Metric] = []
    names: dict[str, int] = {}
    args: dict[str, Argument] = {}
    dry_run: list[DryRun] = []
    retention: list[MeasurementRetention] = []
    for index, spec in enumerate(specs):
        for metric in spec.metrics:
            if metric.name in names:
                return TemplateError(
                    f"templates[{index}]",
                    f"metric {metric.name!r} is also defined by templates[{names[metric.name]}] (names must be unique)",
                )
            names[metric.name] = index
            metrics.append(metric)
        for arg in spec.args:
            known = args.get(arg.name)
            if known is not None and arg.value is not None and known.value is not None and arg.value != known.value:
                return TemplateError(
                    f"templates[{index}].args.{arg.name}",
                    f"declared with different values by two templates: {known.value!r} and {arg.value!r}",
                )
            if known is None or not known.has_default:
                args[arg.name] = arg
        dry_run.extend(d for d in spec.dry_run if d not in dry_run)
        retention.extend(r for r in spec.measurement_retention if r not in retention)
    return AnalysisTemplateSpec(
        metrics=metrics, args=list(args.values()), dry_run=dry_run, measurement_retention=retention
    )


def merge_args(declared: list[Argument], incoming: Mapping[str, str]) -> list[Argument] | TemplateError:
    """Argo's ``MergeArgs``: incoming values override defaults; every declared argument must end with a value."""
    merged: list[Argument] = []
    for arg in declared:
        if arg.name in incoming:
            arg = Argument(name=arg.name, value=incoming[arg.name])
        if not arg.has_default:
            return TemplateError(f"args.{arg.name}", "is required by the template but was not supplied")
        merged.append(arg)
    return merged


def substitute(value: Any, args: Mapping[str, str], limit: int = MAX_FILLED_CHARS) -> Any:
    """Replace ``{{args.NAME}}`` in every string of a JSON-like value; unknown names are left as they are.

    ValueError when the strings would hold more than ``limit`` characters in all, found before any is built."""
    left = [limit]

    def fill(text: str) -> str:
        matches = list(_PLACEHOLDER.finditer(text))
        left[0] -= len(text) + sum(len(args.get(m.group(1), m.group(0))) - len(m.group(0)) for m in matches)
        if left[0] < 0:
            raise ValueError(f"the arguments filled in make more than {limit} characters of text")
        return _PLACEHOLDER.sub(lambda m: args.get(m.group(1), m.group(0)), text) if matches else text

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return fill(item)
        if isinstance(item, Mapping):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    return walk(value)


def placeholders(value: Any) -> set[str]:
    """The argument names a JSON-like value still refers to."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(item) for item in value)) if value else set()
    return set()


def resolve_metric(metric: Metric, args: Mapping[str, str]) -> Metric | TemplateError:
    """A metric with its placeholders filled from ``args``; a placeholder naming no argument is an error."""
    wire = metric.wire()
    unknown = sorted(placeholders(wire) - set(args))
    if unknown:
        return TemplateError(f"metrics.{metric.name}", f"refers to undeclared argument {unknown[0]!r}")
    try:
        return Metric.model_validate(substitute(wire, args))
    except ValueError as error:
        return TemplateError(f"metrics.{metric.name}", f"invalid once arguments are filled in: {error}")


def values_of(args: list[Argument]) -> dict[str, str]:
    """Plain argument values (secret arguments excluded: they are resolved only when measuring)."""
    return {arg.name: arg.value for arg in args if arg.value is not None}


def resolve_analysis(
    analysis: RolloutAnalysis,
    rollout: Rollout,
    *,
    templates: Templates,
    cluster_templates: ClusterTemplates | None = None,
    stable_hash: str | None,
    latest_hash: str,
) -> AnalysisRunSpec | TemplateError:
    """The AnalysisRun spec for a Rollout's analysis reference, or the first problem, naming the field."""
    namespace = rollout.metadata.namespace
    specs: list[AnalysisTemplateSpec] = []
    for index, ref in enumerate(analysis.templates):
        spec = find_template(
            ref.template_name,
            namespace=namespace,
            cluster_scope=ref.cluster_scope,
            templates=templates,
            cluster_templates=cluster_templates or {},
        )
        if spec is None:
            kind = "ClusterAnalysisTemplate" if ref.cluster_scope else "AnalysisTemplate"
            return TemplateError(f"templates[{index}]", f"{kind} {ref.template_name!r} not found")
        specs.append(spec)
    merged = merge_templates(specs)
    if isinstance(merged, TemplateError):
        return merged
    incoming = rollout_args(analysis.args, rollout, stable_hash=stable_hash, latest_hash=latest_hash)
    if isinstance(incoming, TemplateError):
        return incoming
    args = merge_args(merged.args, incoming)
    if isinstance(args, TemplateError):
        return args
    known = values_of(args)
    secret_names = {arg.name: f"{{{{args.{arg.name}}}}}" for arg in args if arg.value is None}
    metrics: list[Metric] = []
    for metric in merged.metrics:
        resolved = resolve_metric(metric, {**secret_names, **known})
        if isinstance(resolved, TemplateError):
            return resolved
        metrics.append(resolved)
    try:
        dry_run = [*merged.dry_run, *(DryRun.model_validate(d) for d in analysis.dry_run)]
        retention = [
            *merged.measurement_retention,
            *(MeasurementRetention.model_validate(r) for r in analysis.measurement_retention),
        ]
    except ValueError as error:
        return TemplateError("dryRun/measurementRetention", str(error).splitlines()[0])
    return AnalysisRunSpec(metrics=metrics, args=args, dry_run=dry_run, measurement_retention=retention)
