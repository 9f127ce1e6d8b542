"""What each mode can do, and the one check that refuses a manifest asking for more: `admit(document, mode)`.

A manifest can be valid (`headway.spec.validate`) and still ask for something the mode it is applied to cannot
do: an Istio VirtualService on one machine, the embedded proxy's counters in a cluster, an experiment step
where no experiment runs. Left unchecked, the rollout would report what never happened (a weight "verified"
on a proxy with no backends, a router silently skipped), so each mode refuses such a manifest before acting:

- ``headway lint`` reports what a mode lacks (a warning naming the mode by default, an error with ``--mode``);
- the embedded runner refuses the document at apply (nothing stored, nothing started);
- the controller marks the Rollout ``InvalidSpec`` and acts on nothing, like any invalid spec.

What each mode can do is read from the mode registry (`headway.engine.modes`), the same table each mode's wiring
builds its engine from: a router, provider or gate backend admission lets through is one the mode really builds.
Pure: no I/O, no clock; the problems carry field paths (``spec.strategy.canary.trafficRouting.istio``) and a
message that names the mode and the way out.

Severity follows what the gap does to a rollout. An error where the rollout would misbehave or report what it
did not do (a router nobody drives, a step kind with no effect, a provider nobody runs). A warning where the
field has no effect but nothing reported depends on it (pod labels on local processes, anti-affinity).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from headway.core.analysis import JUDGE_PLUGIN
from headway.engine.modes import MODES, Mode, ModeRegistry
from headway.spec.analysis import AnalysisRun, AnalysisRunSpec, AnalysisTemplate, ClusterAnalysisTemplate, Metric
from headway.spec.load import Document, Manifest, Problem, Severity
from headway.spec.rollout import CanaryStrategy, Rollout, TrafficRouting
from headway.spec.validate import Finding, located  # one thing a mode cannot do: path, message, severity

__all__ = ["Capabilities", "Mode", "admit", "admit_all", "check", "metric_provider", "run_problem"]
"""`Mode` is the registry's (`headway.engine.modes`), named here too: callers say which mode they admit for."""

ROUTING = "spec.strategy.canary.trafficRouting"
NOTIFICATION_ANNOTATION = "notifications.argoproj.io/subscribe."
"""Argo Rollouts' notification subscriptions (``notifications.argoproj.io/subscribe.<trigger>.<service>``)."""

Capabilities = ModeRegistry[Any]
"""A mode as admission reads it: its registry entry."""


# --- the checks --------------------------------------------------------------------------------------------------


def admit(document: Document, mode: Mode) -> list[Problem]:
    """What ``mode`` cannot do of a loaded document, located like `headway.spec.validate` locates problems.

    A document that did not load (``model`` None) has its own errors already and is not judged here."""
    if document.model is None:
        return []
    return [located(document, finding) for finding in check(document.model, mode)]


def admit_all(documents: Sequence[Document], mode: Mode) -> list[Problem]:
    return [problem for document in documents for problem in admit(document, mode)]


def check(model: Manifest, mode: Mode) -> list[Finding]:
    """Findings for one object of any kind in ``mode``."""
    caps = MODES[mode]
    if model.kind not in caps.kinds:
        return [Finding("kind", f"the {mode} mode does not run {model.kind}s")]
    if isinstance(model, Rollout):
        return list(_rollout(model, caps))
    if isinstance(model, AnalysisTemplate | ClusterAnalysisTemplate | AnalysisRun):
        return list(_metrics(model.spec.metrics, "spec.metrics", caps))
    return []  # an Experiment's analyses are templates, checked where they are applied


def run_problem(spec: AnalysisRunSpec, mode: Mode) -> str | None:
    """Why ``mode`` cannot measure a resolved run (its first metric whose provider the mode lacks), or None.

    For the run-time check: templates the mode could not refuse at apply (a cluster's, or stored before)."""
    for finding in _metrics(spec.metrics, "metrics", MODES[mode]):
        if finding.severity is Severity.ERROR:
            return f"{finding.path}: {finding.message}"
    return None


def metric_provider(metric: Metric) -> str:
    """The provider type that measures ``metric``: its provider's wire name, a plugin's name, or for a judge
    metric the counting provider it names as ``source`` (the judge itself measures nothing)."""
    kind = metric.provider.kind
    if kind != "plugin":
        return kind
    plugins = metric.provider.plugin or {}
    if len(plugins) != 1:
        return "plugin"
    name, config = next(iter(plugins.items()))
    if name == JUDGE_PLUGIN and isinstance(config, Mapping) and isinstance(config.get("source"), str):
        return str(config["source"])
    return str(name)


def _metrics(metrics: Sequence[Metric], path: str, caps: Capabilities) -> Iterator[Finding]:
    runs = ", ".join(sorted(caps.providers))
    for i, metric in enumerate(metrics):
        provider = metric_provider(metric)
        if provider in caps.providers:
            continue
        at = f"{path}[{i}].provider"
        if provider == JUDGE_PLUGIN:
            yield Finding(
                f"{at}.plugin[{JUDGE_PLUGIN}].source",
                f"the {caps.mode} mode needs the judge's counting provider named as source (it runs: {runs})",
            )
        else:
            yield Finding(at, f"the {caps.mode} mode cannot run the {provider!r} metric provider (it runs: {runs})")


def _rollout(rollout: Rollout, caps: Capabilities) -> Iterator[Finding]:
    mode = caps.mode
    spec = rollout.spec
    if spec.webhooks and caps.gates is None:
        yield Finding("spec.webhooks", f"the {mode} mode does not call gate webhooks")
    yield from _notifications(rollout, caps)
    if spec.workload_ref is not None and not caps.workload_ref:
        yield Finding(
            "spec.workloadRef",
            f"the {mode} mode cannot take the pod template from a {spec.workload_ref.kind} (set spec.template)",
        )
    canary, blue_green = spec.strategy.canary, spec.strategy.blue_green
    if canary is not None:
        yield from _canary(canary, caps)
    if blue_green is not None:
        path = "spec.strategy.blueGreen"
        if blue_green.preview_service and not caps.preview_endpoint:
            yield Finding(
                f"{path}.previewService",
                f"the {mode} mode serves no preview endpoint (the preview revision runs, but only the active "
                "revision gets traffic)",
                Severity.WARNING,
            )
        yield from _pod_metadata(caps, path, ("activeMetadata", blue_green.active_metadata))
        yield from _pod_metadata(caps, path, ("previewMetadata", blue_green.preview_metadata))
        if blue_green.anti_affinity is not None:
            yield _not_applied(caps, f"{path}.antiAffinity", "pods are placed without it")


def _canary(canary: CanaryStrategy, caps: Capabilities) -> Iterator[Finding]:
    mode, path = caps.mode, "spec.strategy.canary"
    routing = canary.traffic_routing
    names = routing.routers() if routing is not None else []
    driven = [name for name in names if name in caps.routers]
    for name in names:
        if name not in caps.routers:
            yield Finding(
                f"{ROUTING}.{TrafficRouting.field_of(name)}",
                f"the {mode} mode cannot drive {name} ({caps.routing_hint})",
            )
    if len(driven) > 1 and not caps.several_routers:
        yield Finding(ROUTING, f"the {mode} mode drives one router per Rollout (got {', '.join(driven)})")
    if routing is not None and routing.max_weight() != caps.max_traffic_weight:
        yield Finding(
            f"{ROUTING}.maxTrafficWeight",
            f"the {mode} mode's routers weigh traffic out of {caps.max_traffic_weight}: set it to "
            f"{caps.max_traffic_weight} or leave it out",
        )
    if canary.ping_pong is not None:
        yield Finding(
            f"{path}.pingPong",
            f"the {mode} mode does not route by ping-pong services (use canaryService and stableService)",
        )
    yield from _header_limits(canary, caps, driven)
    for i, step in enumerate(canary.steps):
        at = f"{path}.steps[{i}]"
        if step.kind not in caps.step_kinds:
            yield Finding(f"{at}.{step.kind}", f"the {mode} mode cannot run {step.kind} steps")
        header, mirror = step.set_header_route, step.set_mirror_route
        for name in driven:
            ability = caps.routers[name].ability
            if header is not None and header.match and not ability.header_routes:
                yield Finding(f"{at}.setHeaderRoute", f"{name} cannot route by header in the {mode} mode")
            if mirror is not None and mirror.match and not ability.mirror_routes:
                yield Finding(f"{at}.setMirrorRoute", f"{name} cannot mirror traffic in the {mode} mode")
    yield from _pod_metadata(caps, path, ("canaryMetadata", canary.canary_metadata))
    yield from _pod_metadata(caps, path, ("stableMetadata", canary.stable_metadata))
    if canary.anti_affinity is not None:
        yield _not_applied(caps, f"{path}.antiAffinity", "pods are placed without it")
    if canary.replica_progress_threshold is not None:
        yield _not_applied(caps, f"{path}.replicaProgressThreshold", "a step waits for all of its replicas")


def _header_limits(canary: CanaryStrategy, caps: Capabilities, driven: Sequence[str]) -> Iterator[Finding]:
    """Header routes beyond what a driven router can express: too many matches in one route, or more routes in
    force at once than it holds (a second one would overwrite the first, or fail mid-rollout)."""
    active: list[str] = []
    for i, step in enumerate(canary.steps):
        route = step.set_header_route
        if route is None:
            continue
        at = f"spec.strategy.canary.steps[{i}].setHeaderRoute"
        if not route.match:
            active = [name for name in active if name != route.name]
            continue
        if route.name not in active:
            active.append(route.name)
        for name in driven:
            ability = caps.routers[name].ability
            if not ability.header_routes:
                continue
            if ability.header_matches is not None and len(route.match) > ability.header_matches:
                yield Finding(
                    f"{at}.match",
                    f"{name} matches at most {ability.header_matches} header per route in the {caps.mode} mode "
                    f"(got {len(route.match)})",
                )
            limit = ability.header_routes_at_once
            if limit is not None and len(active) > limit:
                others = ", ".join(repr(other) for other in active if other != route.name)
                yield Finding(
                    f"{at}.name",
                    f"{name} holds at most {limit} header route at once in the {caps.mode} mode: {route.name!r} "
                    f"would replace {others} (remove it first with a setHeaderRoute without match)",
                )


def _notifications(rollout: Rollout, caps: Capabilities) -> Iterator[Finding]:
    """Argo's notification subscriptions: no mode reads them (a warning: nothing reported depends on them), and
    the message says how the mode notifies instead, or that it does not."""
    for key in sorted(rollout.metadata.annotations):
        if not key.startswith(NOTIFICATION_ANNOTATION):
            continue
        message = (
            f"the {caps.mode} mode does not read it: it delivers notifications configured by {caps.notifications}"
            if caps.notifications is not None
            else f"the {caps.mode} mode delivers no notifications: it has no effect (events are Kubernetes Events)"
        )
        yield Finding(f"metadata.annotations[{key}]", message, Severity.WARNING)


def _pod_metadata(caps: Capabilities, path: str, field: tuple[str, object]) -> Iterator[Finding]:
    wire, metadata = field
    if metadata is not None and not caps.pod_metadata:
        yield Finding(
            f"{path}.{wire}",
            f"has no effect in the {caps.mode} mode (its replicas are local processes, without labels or annotations)",
            Severity.WARNING,
        )


def _not_applied(caps: Capabilities, path: str, consequence: str) -> Finding:
    return Finding(path, f"is not applied by the {caps.mode} mode ({consequence})", Severity.WARNING)
