"""Cross-field and cross-document checks: what no single field can know on its own.

The models check each field (types, ranges, exactly one step kind). This module checks how fields relate
(both strategies set, a header route that ``managedRoutes`` does not declare, maxSurge and maxUnavailable both
zero) and how documents relate (a template argument no Rollout supplies). It follows Argo Rollouts'
``pkg/apis/rollouts/validation`` in what it rejects, with messages that name the field and the fix instead of
Argo's Go-struct dumps. Every check runs and every problem is collected: a user fixing a manifest should see
all of it at once.

Templates are only judged against references when they are in the same lint set; a template that lives in
the cluster is assumed right, since lint cannot see it.

Where we are stricter than Argo, on purpose:
- arguments a reference supplies that no referenced template declares are errors (Argo drops them silently,
  which hides typos such as ``service`` for ``service-name``);
- duplicate objects in one lint set are errors (the second would overwrite the first on ``kubectl apply``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headway.spec.analysis import (
    AnalysisRun,
    AnalysisTemplate,
    AnalysisTemplateSpec,
    ClusterAnalysisTemplate,
    Metric,
    has_placeholder,
)
from headway.spec.base import parse_duration, show
from headway.spec.experiment import Experiment
from headway.spec.load import Document, Problem, Severity
from headway.spec.rollout import (
    POD_TEMPLATE_HASH_LABEL,
    AntiAffinity,
    BlueGreenStrategy,
    CanaryStrategy,
    PodMetadata,
    Rollout,
    RolloutAnalysis,
)


@dataclass(frozen=True)
class Finding:
    """A problem inside one object: the wire path and the message; `validate` adds file and object."""

    path: str
    message: str
    severity: Severity = Severity.ERROR


@dataclass(frozen=True)
class TemplateIndex:
    """The AnalysisTemplates and ClusterAnalysisTemplates of a lint set, looked up as a reference would."""

    namespaced: Mapping[tuple[str, str], AnalysisTemplateSpec]
    cluster: Mapping[str, AnalysisTemplateSpec]

    @classmethod
    def of(cls, models: Iterable[object]) -> TemplateIndex:
        """Index the templates among `models` (other kinds are ignored)."""
        namespaced: dict[tuple[str, str], AnalysisTemplateSpec] = {}
        cluster: dict[str, AnalysisTemplateSpec] = {}
        for model in models:
            if isinstance(model, AnalysisTemplate):
                namespaced[(model.metadata.namespace, model.metadata.name)] = model.spec
            elif isinstance(model, ClusterAnalysisTemplate):
                cluster[model.metadata.name] = model.spec
        return cls(namespaced, cluster)

    def get(self, namespace: str, name: str, *, cluster_scope: bool) -> AnalysisTemplateSpec | None:
        """The template a reference resolves to, or None when it is not in the lint set."""
        if cluster_scope:
            return self.cluster.get(name)
        return self.namespaced.get((namespace, name))


EMPTY_INDEX = TemplateIndex({}, {})


# --- the lint set ------------------------------------------------------------------------------------------------


def validate(documents: Sequence[Document]) -> list[Problem]:
    """Cross-field and cross-document problems of every loaded (valid) document, in document order.

    Documents that failed to load are skipped: their field errors are already reported, and checks over a
    half-read object would only add noise.
    """
    models = [document.model for document in documents if document.model is not None]
    templates = TemplateIndex.of(models)
    problems: list[Problem] = []
    for document in documents:
        if document.model is None:
            continue
        found = [located(document, finding) for finding in check(document.model, templates)]
        problems.extend(sorted(found, key=lambda problem: problem.line or 0))
    problems.extend(_duplicate_objects(documents))
    return problems


def check(model: object, templates: TemplateIndex = EMPTY_INDEX) -> list[Finding]:
    """Findings for one object of any kind, with `templates` used to check analysis references."""
    if isinstance(model, Rollout):
        return check_rollout(model, templates)
    if isinstance(model, AnalysisTemplate | ClusterAnalysisTemplate):
        return check_template_spec(model.spec, "spec")
    if isinstance(model, AnalysisRun):
        return check_analysis_run(model)
    if isinstance(model, Experiment):
        return check_experiment(model, templates)
    return []


def located(document: Document, finding: Finding) -> Problem:
    """The finding as a Problem of ``document``: its file, object, and the line of the nearest enclosing field."""
    line = None
    path = finding.path
    while line is None:
        line = document.lines.get(path)
        if not path:
            break
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return Problem(
        document.file,
        document.kind,
        document.name,
        finding.path,
        finding.message,
        finding.severity,
        document.index,
        line,
    )


def _duplicate_objects(documents: Sequence[Document]) -> Iterator[Problem]:
    seen: dict[tuple[str, str, str], Document] = {}
    for document in documents:
        model = document.model
        if model is None:
            continue
        namespace = "" if isinstance(model, ClusterAnalysisTemplate) else model.metadata.namespace
        key = (document.kind, namespace, document.name)
        first = seen.setdefault(key, document)
        if first is not document:
            where = f"{first.file} (document {first.index})"
            finding = Finding("metadata.name", f"{document.kind}/{document.name} is already defined in {where}")
            yield located(document, finding)


# --- Rollout -----------------------------------------------------------------------------------------------------


def check_rollout(rollout: Rollout, templates: TemplateIndex = EMPTY_INDEX) -> list[Finding]:
    """Every cross-field problem of a Rollout, and its analysis references checked against `templates`."""
    found = list(_rollout_spec(rollout))
    strategy = rollout.spec.strategy
    if strategy.canary is None and strategy.blue_green is None:
        found.append(Finding("spec.strategy", "set exactly one of canary, blueGreen (neither is set)"))
    elif strategy.canary is not None and strategy.blue_green is not None:
        found.append(Finding("spec.strategy", "set exactly one of canary, blueGreen (both are set)"))
    if strategy.canary is not None:
        found.extend(_canary(rollout, strategy.canary))
    if strategy.blue_green is not None:
        found.extend(_blue_green(rollout, strategy.blue_green))
    for reference in _rollout_references(rollout):
        found.extend(_check_reference(reference, templates))
    return found


def _rollout_spec(rollout: Rollout) -> Iterator[Finding]:
    spec = rollout.spec
    if spec.workload_ref is None:
        if spec.selector is None:
            yield Finding("spec.selector", "required field is missing")
        elif not spec.selector.match_labels and not spec.selector.match_expressions:
            yield Finding("spec.selector", "empty selector is invalid (set matchLabels or matchExpressions)")
        if spec.template is None:
            yield Finding("spec.template", "required field is missing (or set workloadRef)")
        else:
            yield from _pod_template(spec.template, spec.selector.match_labels if spec.selector else {}, "spec")
    elif spec.template:
        yield Finding("spec.template", "must be empty when workloadRef is set")
    if spec.workload_ref is not None and spec.workload_ref.kind != "Deployment":
        yield Finding("spec.workloadRef.kind", f"{spec.workload_ref.kind!r} is not supported (use Deployment)")
    deadline = spec.progress_deadline()
    if deadline <= spec.min_ready_seconds:
        yield Finding(
            "spec.progressDeadlineSeconds",
            f"{deadline} must be greater than minReadySeconds ({spec.min_ready_seconds})",
        )


def _pod_template(template: Mapping[str, Any], match_labels: Mapping[str, str], path: str) -> Iterator[Finding]:
    """A pod template needs containers, and its labels must carry the selector's (or no pod is ever owned)."""
    pod_spec = template.get("spec")
    containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
    if not isinstance(containers, list) or not containers:
        yield Finding(f"{path}.template.spec.containers", "must have at least 1 container")
    metadata = template.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    labels = labels if isinstance(labels, dict) else {}
    missing = [f"{key}={value}" for key, value in match_labels.items() if labels.get(key) != value]
    if missing:
        yield Finding(
            f"{path}.template.metadata.labels",
            f"selector does not match template labels (missing {', '.join(missing)})",
        )


def _canary(rollout: Rollout, canary: CanaryStrategy) -> Iterator[Finding]:
    path = "spec.strategy.canary"
    routing = canary.traffic_routing
    if _is_zero(canary.max_surge_or_default()) and _is_zero(canary.max_unavailable_or_default()):
        yield Finding(f"{path}.maxSurge", "maxSurge and maxUnavailable cannot both be 0 (no pod could be replaced)")
    if canary.canary_service and canary.canary_service == canary.stable_service:
        yield Finding(
            f"{path}.stableService",
            f"{canary.stable_service!r} is also the canaryService (two different services are required)",
        )
    if routing is not None and canary.ping_pong is None and not _istio_subsets(routing.istio):
        for wire, service in (("canaryService", canary.canary_service), ("stableService", canary.stable_service)):
            if not service:
                yield Finding(f"{path}.{wire}", "required field is missing (trafficRouting needs it)")
    if canary.ping_pong is not None and canary.ping_pong.ping_service == canary.ping_pong.pong_service:
        yield Finding(f"{path}.pingPong.pongService", "must differ from pingService")
    if routing is None:
        if canary.scale_down_delay_seconds is not None:
            yield Finding(f"{path}.scaleDownDelaySeconds", "can only be used with trafficRouting")
        if canary.dynamic_stable_scale:
            yield Finding(f"{path}.dynamicStableScale", "can only be used with trafficRouting")
    elif canary.scale_down_delay_seconds is not None and canary.dynamic_stable_scale:
        yield Finding(f"{path}.dynamicStableScale", "cannot be used together with scaleDownDelaySeconds")
    if routing is not None:
        yield from _managed_routes(canary, path)
    if routing is not None and not routing.routers():
        # Also what a cluster leaves of a router its Rollout CRD's schema does not name (older Argo Rollouts CRDs
        # have no ``plugins``): split traffic with nothing would wait for a weight no router ever reads back.
        yield Finding(
            f"{path}.trafficRouting",
            "names no traffic router (set one, or leave trafficRouting out for a canary by pod count); if the "
            "manifest sets one, the cluster's Rollout CRD dropped it: its schema has no such field",
        )
    yield from _steps(canary, path)
    starting_step = canary.analysis.starting_step if canary.analysis is not None else None
    if starting_step is not None and starting_step > len(canary.steps):
        yield Finding(
            f"{path}.analysis.startingStep",
            f"{starting_step} is out of range 0..{len(canary.steps)} (there are {len(canary.steps)} steps)",
        )
    yield from _revision_limit(rollout, canary.scale_down_delay_revision_limit, path)
    yield from _anti_affinity(canary.anti_affinity, f"{path}.antiAffinity")
    yield from _ephemeral_labels(rollout, canary.canary_metadata, f"{path}.canaryMetadata")
    yield from _ephemeral_labels(rollout, canary.stable_metadata, f"{path}.stableMetadata")


def _managed_routes(canary: CanaryStrategy, path: str) -> Iterator[Finding]:
    assert canary.traffic_routing is not None  # noqa: S101 - an invariant for the type checker, not a check of input
    for i, name in _repeats(route.name for route in canary.traffic_routing.managed_routes):
        yield Finding(f"{path}.trafficRouting.managedRoutes[{i}].name", f"{name!r} is listed twice")


def _steps(canary: CanaryStrategy, path: str) -> Iterator[Finding]:
    routing = canary.traffic_routing
    declared = [route.name for route in routing.managed_routes] if routing else []
    needs_routes = False
    for i, step in enumerate(canary.steps):
        at = f"{path}.steps[{i}]"
        if routing is None:
            for attr, wire in (
                (step.set_canary_scale, "setCanaryScale"),
                (step.set_header_route, "setHeaderRoute"),
                (step.set_mirror_route, "setMirrorRoute"),
            ):
                if attr is not None:
                    yield Finding(f"{at}.{wire}", "requires trafficRouting (only a traffic router can do this)")
        for route, wire in ((step.set_header_route, "setHeaderRoute"), (step.set_mirror_route, "setMirrorRoute")):
            if route is None or routing is None:
                continue
            if not declared:
                needs_routes = True
            elif route.name not in declared:
                yield Finding(
                    f"{at}.{wire}.name",
                    f"{route.name!r} is not in trafficRouting.managedRoutes (declared: {', '.join(declared)})",
                )
        if step.experiment is not None:
            yield from _experiment_step(step.experiment.templates, routing is not None, f"{at}.experiment")
    if needs_routes:
        yield Finding(
            f"{path}.trafficRouting.managedRoutes",
            "required field is missing (setHeaderRoute and setMirrorRoute steps name a route declared here)",
        )


def _experiment_step(templates: Sequence[Any], routed: bool, path: str) -> Iterator[Finding]:
    for j, template in enumerate(templates):
        if template.weight is not None and not routed:
            yield Finding(f"{path}.templates[{j}].weight", "requires trafficRouting (without it no traffic is split)")
        elif template.weight is not None:
            yield Finding(
                f"{path}.templates[{j}].weight",
                "is not supported yet: the experiment's pods run and are analysed, but get no share of the traffic",
                Severity.WARNING,
            )
        if template.service is not None:
            yield Finding(
                f"{path}.templates[{j}].service",
                "is not supported yet: no Service is created for the experiment's pods",
                Severity.WARNING,
            )
    for j, name in _repeats(template.name for template in templates):
        yield Finding(f"{path}.templates[{j}].name", f"{name!r} is listed twice")


def _blue_green(rollout: Rollout, blue_green: BlueGreenStrategy) -> Iterator[Finding]:
    path = "spec.strategy.blueGreen"
    if not blue_green.active_service:
        yield Finding(f"{path}.activeService", "required field is missing")
    elif blue_green.active_service == blue_green.preview_service:
        yield Finding(
            f"{path}.previewService",
            f"{blue_green.preview_service!r} is also the activeService (two different services are required)",
        )
    if blue_green.auto_promotion_enabled is False and blue_green.auto_promotion_seconds is not None:
        yield Finding(
            f"{path}.autoPromotionSeconds",
            "has no effect when autoPromotionEnabled is false",
            Severity.WARNING,
        )
    yield from _revision_limit(rollout, blue_green.scale_down_delay_revision_limit, path)
    yield from _anti_affinity(blue_green.anti_affinity, f"{path}.antiAffinity")
    yield from _ephemeral_labels(rollout, blue_green.active_metadata, f"{path}.activeMetadata")
    yield from _ephemeral_labels(rollout, blue_green.preview_metadata, f"{path}.previewMetadata")


def _ephemeral_labels(rollout: Rollout, metadata: PodMetadata | None, path: str) -> Iterator[Finding]:
    """Ephemeral labels come and go with a role: one that is also a selector label (or the pod-template-hash
    label) would take the pods out of their ReplicaSet and Services the moment it changed."""
    if metadata is None:
        return
    selector = rollout.spec.selector.match_labels if rollout.spec.selector else {}
    for key in metadata.labels:
        if key == POD_TEMPLATE_HASH_LABEL or key in selector:
            yield Finding(f"{path}.labels.{key}", "must not set a selector label or rollouts-pod-template-hash")


def _revision_limit(rollout: Rollout, limit: int | None, path: str) -> Iterator[Finding]:
    history = rollout.spec.revision_history_limit_or_default()
    if limit is not None and limit > history:
        yield Finding(
            f"{path}.scaleDownDelayRevisionLimit",
            f"{limit} is greater than revisionHistoryLimit ({history}); old revisions would be deleted first",
        )


def _anti_affinity(anti_affinity: AntiAffinity | None, path: str) -> Iterator[Finding]:
    if anti_affinity is None:
        return
    preferred = anti_affinity.preferred_during_scheduling_ignored_during_execution
    required = anti_affinity.required_during_scheduling_ignored_during_execution
    if (preferred is None) == (required is None):
        yield Finding(
            path,
            "set exactly one of preferredDuringSchedulingIgnoredDuringExecution, "
            "requiredDuringSchedulingIgnoredDuringExecution",
        )
    if preferred is not None:
        weight = preferred.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            yield Finding(
                f"{path}.preferredDuringSchedulingIgnoredDuringExecution.weight",
                f"{show(weight)} is out of range 1..100",
            )


def _repeats(names: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(index, name) of every name already seen earlier in `names`: reported where the repeat is."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            yield i, name
        seen.add(name)


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _istio_subsets(istio: Mapping[str, Any] | None) -> bool:
    """Istio subset-level splitting routes by DestinationRule subsets, so it needs no canary/stable Service."""
    return bool(istio and istio.get("destinationRule"))


# --- analysis references ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Templates merged into one AnalysisRun, and the arguments the referencing object supplies."""

    path: str
    namespace: str
    templates: tuple[tuple[str, bool], ...]
    args: tuple[tuple[str, Any], ...]
    finite: bool
    template_path: str = "templates"


def _rollout_references(rollout: Rollout) -> Iterator[Reference]:
    namespace = rollout.metadata.namespace
    strategy = rollout.spec.strategy
    if strategy.canary is not None:
        canary, path = strategy.canary, "spec.strategy.canary"
        if canary.analysis is not None:
            yield _reference(canary.analysis, f"{path}.analysis", namespace, finite=False)
        for i, step in enumerate(canary.steps):
            if step.analysis is not None:
                yield _reference(step.analysis, f"{path}.steps[{i}].analysis", namespace, finite=True)
            if step.experiment is not None:
                for j, exp in enumerate(step.experiment.analyses):
                    yield Reference(
                        f"{path}.steps[{i}].experiment.analyses[{j}]",
                        namespace,
                        ((exp.template_name, exp.cluster_scope),),
                        tuple((arg.name, arg) for arg in exp.args),
                        finite=False,
                        template_path="templateName",
                    )
    if strategy.blue_green is not None:
        path = "spec.strategy.blueGreen"
        for wire, analysis in (
            ("prePromotionAnalysis", strategy.blue_green.pre_promotion_analysis),
            ("postPromotionAnalysis", strategy.blue_green.post_promotion_analysis),
        ):
            if analysis is not None:
                yield _reference(analysis, f"{path}.{wire}", namespace, finite=True)


def _reference(analysis: RolloutAnalysis, path: str, namespace: str, *, finite: bool) -> Reference:
    return Reference(
        path,
        namespace,
        tuple((ref.template_name, ref.cluster_scope) for ref in analysis.templates),
        tuple((arg.name, arg) for arg in analysis.args),
        finite,
    )


_DOWNWARD_FIELD = re.compile(r"^metadata\.(name|namespace|uid|(labels|annotations)\['[^']+'\])$")


def _check_reference(reference: Reference, templates: TemplateIndex) -> Iterator[Finding]:
    """Duplicates, field references, then (for templates in the lint set) argument and metric checks."""
    if reference.template_path == "templates":
        for j, name in _repeats(name for name, _ in reference.templates):
            yield Finding(f"{reference.path}.templates[{j}].templateName", f"{name!r} is listed twice")
    for k, name in _repeats(name for name, _ in reference.args):
        yield Finding(f"{reference.path}.args[{k}].name", f"{name!r} is supplied twice")
    for k, (_, arg) in enumerate(reference.args):
        field_ref = arg.value_from.field_ref if arg.value_from is not None else None
        field_path = field_ref.field_path if field_ref is not None else ""
        if field_path.startswith("metadata") and not _DOWNWARD_FIELD.match(field_path):
            yield Finding(
                f"{reference.path}.args[{k}].valueFrom.fieldRef.fieldPath",
                f"{field_path!r} is not supported (use metadata.name, metadata.namespace, "
                "metadata.uid, metadata.labels['KEY'] or metadata.annotations['KEY'])",
            )
    resolved = [
        (name, templates.get(reference.namespace, name, cluster_scope=cluster)) for name, cluster in reference.templates
    ]
    present = list({name: spec for name, spec in resolved if spec is not None}.items())
    yield from _required_args(reference, present)
    if present and len(present) == len(resolved):
        yield from _undeclared_args(reference, present)
        yield from _merged_metrics(reference, present)


def _required_args(reference: Reference, present: Sequence[tuple[str, AnalysisTemplateSpec]]) -> Iterator[Finding]:
    supplied = {name for name, _ in reference.args}
    for name, spec in present:
        for arg in {arg.name: arg for arg in spec.args}.values():
            if not arg.has_default and arg.name not in supplied:
                yield Finding(
                    f"{reference.path}.args",
                    f"argument {arg.name!r} of AnalysisTemplate {name!r} has no value and is not supplied here",
                )


def _undeclared_args(reference: Reference, present: Sequence[tuple[str, AnalysisTemplateSpec]]) -> Iterator[Finding]:
    declared = {arg.name for _, spec in present for arg in spec.args}
    listing = ", ".join(sorted(declared)) or "none"
    names = ", ".join(repr(name) for name, _ in present)
    for k, (name, _) in enumerate(reference.args):
        if name not in declared:
            yield Finding(
                f"{reference.path}.args[{k}].name",
                f"{name!r} is not an argument of AnalysisTemplate {names} (declared: {listing})",
            )


def _merged_metrics(reference: Reference, present: Sequence[tuple[str, AnalysisTemplateSpec]]) -> Iterator[Finding]:
    owner: dict[str, str] = {}
    for name, spec in present:
        for metric in spec.metrics:
            if metric.name in owner and owner[metric.name] != name:
                yield Finding(
                    reference.path,
                    f"metric {metric.name!r} is defined by both {owner[metric.name]!r} and {name!r} "
                    "(metric names must be unique within one analysis)",
                )
            owner.setdefault(metric.name, name)
            if reference.finite and metric.runs_indefinitely:
                yield Finding(
                    reference.path,
                    f"AnalysisTemplate {name!r} has metric {metric.name!r} which runs indefinitely (interval "
                    "without count); set count, or use it as background analysis",
                )


# --- analysis templates and runs -------------------------------------------------------------------------------


_ARG_PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.\-]+)\s*\}\}")


def check_template_spec(spec: AnalysisTemplateSpec, path: str = "spec") -> list[Finding]:
    """Problems of a template's metrics and arguments (also used for an AnalysisRun's spec)."""
    found: list[Finding] = []
    if not spec.metrics:
        found.append(Finding(f"{path}.metrics", "must have at least 1 metric"))
    found.extend(_duplicates([metric.name for metric in spec.metrics], f"{path}.metrics", "metric name"))
    found.extend(_duplicates([arg.name for arg in spec.args], f"{path}.args", "argument"))
    declared = {arg.name for arg in spec.args}
    for i, metric in enumerate(spec.metrics):
        found.extend(_metric(metric, f"{path}.metrics[{i}]", declared))
    metric_names = {metric.name for metric in spec.metrics}
    selectors = [("dryRun", i, entry.metric_name) for i, entry in enumerate(spec.dry_run)]
    selectors += [("measurementRetention", i, entry.metric_name) for i, entry in enumerate(spec.measurement_retention)]
    for wire, i, metric_name in selectors:
        if metric_name != "*" and metric_name not in metric_names:
            found.append(
                Finding(
                    f"{path}.{wire}[{i}].metricName",
                    f"{metric_name!r} is not a metric of this template "
                    f"(metrics: {', '.join(sorted(metric_names))}; or '*' for all)",
                )
            )
    return found


def check_analysis_run(run: AnalysisRun) -> list[Finding]:
    """A run is a template whose arguments must all have values already."""
    found = check_template_spec(
        AnalysisTemplateSpec(
            metrics=run.spec.metrics,
            args=run.spec.args,
            dry_run=run.spec.dry_run,
            measurement_retention=run.spec.measurement_retention,
        ),
        "spec",
    )
    for i, arg in enumerate(run.spec.args):
        if not arg.has_default:
            found.append(Finding(f"spec.args[{i}]", f"argument {arg.name!r} has no value or valueFrom"))
    return found


def _duplicates(names: Sequence[str], path: str, what: str) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            yield Finding(f"{path}[{i}].name", f"{what} {name!r} is already used by {path}[{first[name]}]")
        else:
            first[name] = i


def _metric(metric: Metric, path: str, declared: set[str]) -> Iterator[Finding]:
    count = metric.count if isinstance(metric.count, int) else None
    if count is not None and count > 0:
        for wire, limit in (
            ("failureLimit", metric.failure_limit),
            ("inconclusiveLimit", metric.inconclusive_limit),
            ("consecutiveSuccessLimit", metric.consecutive_success_limit),
        ):
            if isinstance(limit, int) and limit > count:
                yield Finding(f"{path}.count", f"{count} is less than {wire} ({limit}); the limit could never be hit")
    if count is not None and count > 1 and metric.interval is None:
        yield Finding(f"{path}.interval", f"required field is missing (count is {count}, so measurements repeat)")
    interval = metric.interval
    if interval is not None and not has_placeholder(interval) and parse_duration(interval) == 0:
        yield Finding(f"{path}.interval", "must be greater than 0")
    for where, text in _strings(metric.wire(), path):
        for match in _ARG_PLACEHOLDER.finditer(text):
            if match.group(1) not in declared:
                listing = ", ".join(sorted(declared)) or "none"
                yield Finding(where, f"{match.group(0)!r} refers to an undeclared argument (declared: {listing})")


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every string inside a wire dict, so placeholders can be located."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


# --- Experiment ----------------------------------------------------------------------------------------------------


def check_experiment(experiment: Experiment, templates: TemplateIndex = EMPTY_INDEX) -> list[Finding]:
    """Template names unique, pod templates sound, analyses checked against `templates`."""
    spec = experiment.spec
    found: list[Finding] = []
    if not spec.templates:
        found.append(Finding("spec.templates", "must have at least 1 template"))
    found.extend(_duplicates([template.name for template in spec.templates], "spec.templates", "template name"))
    found.extend(_duplicates([analysis.name for analysis in spec.analyses], "spec.analyses", "analysis name"))
    for i, template in enumerate(spec.templates):
        at = f"spec.templates[{i}]"
        if not template.selector.match_labels and not template.selector.match_expressions:
            found.append(Finding(f"{at}.selector", "empty selector is invalid (set matchLabels or matchExpressions)"))
        found.extend(_pod_template(template.template, template.selector.match_labels, at))
    for j, analysis in enumerate(spec.analyses):
        reference = Reference(
            f"spec.analyses[{j}]",
            experiment.metadata.namespace,
            ((analysis.template_name, analysis.cluster_scope),),
            tuple((arg.name, arg) for arg in analysis.args),
            finite=False,
            template_path="templateName",
        )
        found.extend(_check_reference(reference, templates))
    return found
