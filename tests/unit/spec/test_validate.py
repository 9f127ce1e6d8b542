"""Cross-field and cross-document checks, each asserted as the exact line `headway lint` prints."""

from __future__ import annotations

from typing import Any

import pytest

from headway.spec.load import load_text
from headway.spec.validate import TemplateIndex, check, validate
from tests.unit.spec.manifests import canary, dump, lint, rollout, routed, template

P = "rollout.yaml: Rollout/web"
C = f"{P}: spec.strategy.canary"
B = f"{P}: spec.strategy.blueGreen"


def blue_green(**fields: Any) -> dict[str, Any]:
    return rollout(blueGreen={"activeService": "web-active", "previewService": "web-preview"} | fields)


# --- strategy -----------------------------------------------------------------------------------------------


def test_neither_strategy() -> None:
    manifest = rollout()
    manifest["spec"]["strategy"] = {}
    assert lint(manifest) == [f"{P}: spec.strategy: set exactly one of canary, blueGreen (neither is set)"]


def test_both_strategies() -> None:
    manifest = rollout(canary={}, blueGreen={"activeService": "a"})
    assert lint(manifest) == [f"{P}: spec.strategy: set exactly one of canary, blueGreen (both are set)"]


def test_blue_green_without_active_service() -> None:
    manifest = rollout(blueGreen={"previewService": "web-preview"})
    assert lint(manifest) == [f"{B}.activeService: required field is missing"]


def test_blue_green_services_must_differ() -> None:
    manifest = blue_green(previewService="web-active")
    assert lint(manifest) == [
        f"{B}.previewService: 'web-active' is also the activeService (two different services are required)"
    ]


def test_auto_promotion_seconds_without_auto_promotion_is_a_warning() -> None:
    [document] = load_text(dump(blue_green(autoPromotionEnabled=False, autoPromotionSeconds=30)), "rollout.yaml")
    [problem] = validate([document])
    assert problem.render() == f"{B}.autoPromotionSeconds: has no effect when autoPromotionEnabled is false"
    assert not problem.is_error


def test_scale_down_revision_limit_above_history() -> None:
    manifest = blue_green(scaleDownDelayRevisionLimit=5)
    manifest["spec"]["revisionHistoryLimit"] = 2
    assert lint(manifest) == [
        f"{B}.scaleDownDelayRevisionLimit: 5 is greater than revisionHistoryLimit (2); "
        "old revisions would be deleted first"
    ]


# --- pod template and selector ------------------------------------------------------------------------------


def test_selector_and_template_are_required_without_workload_ref() -> None:
    manifest = rollout()
    del manifest["spec"]["selector"], manifest["spec"]["template"]
    assert lint(manifest) == [
        f"{P}: spec.selector: required field is missing",
        f"{P}: spec.template: required field is missing (or set workloadRef)",
    ]


def test_workload_ref_replaces_the_template() -> None:
    manifest = rollout()
    manifest["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert lint(manifest) == [f"{P}: spec.template: must be empty when workloadRef is set"]
    del manifest["spec"]["template"], manifest["spec"]["selector"]
    assert lint(manifest) == []


def test_template_without_containers_and_with_labels_the_selector_misses() -> None:
    manifest = rollout()
    manifest["spec"]["template"] = {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": []}}
    assert lint(manifest) == [
        f"{P}: spec.template.metadata.labels: selector does not match template labels (missing app=web)",
        f"{P}: spec.template.spec.containers: must have at least 1 container",
    ]


def test_empty_selector() -> None:
    manifest = rollout()
    manifest["spec"]["selector"] = {}
    assert lint(manifest) == [f"{P}: spec.selector: empty selector is invalid (set matchLabels or matchExpressions)"]


def test_progress_deadline_must_exceed_min_ready_seconds() -> None:
    manifest = rollout()
    manifest["spec"] |= {"minReadySeconds": 60, "progressDeadlineSeconds": 30}
    assert lint(manifest) == [f"{P}: spec.progressDeadlineSeconds: 30 must be greater than minReadySeconds (60)"]


# --- canary -------------------------------------------------------------------------------------------------


def test_max_surge_and_max_unavailable_both_zero() -> None:
    assert lint(canary(maxSurge=0, maxUnavailable="0%")) == [
        f"{C}.maxSurge: maxSurge and maxUnavailable cannot both be 0 (no pod could be replaced)"
    ]
    assert lint(canary(maxSurge=0)) == []  # maxUnavailable defaults to 25%


def test_traffic_routing_needs_both_services() -> None:
    manifest = routed()
    del manifest["spec"]["strategy"]["canary"]["canaryService"]
    del manifest["spec"]["strategy"]["canary"]["stableService"]
    assert lint(manifest) == [
        f"{C}.canaryService: required field is missing (trafficRouting needs it)",
        f"{C}.stableService: required field is missing (trafficRouting needs it)",
    ]


def test_istio_subset_routing_needs_no_services() -> None:
    manifest = canary(trafficRouting={"istio": {"destinationRule": {"name": "web"}}})
    assert lint(manifest) == []


def test_traffic_routing_without_a_router_is_refused() -> None:
    # what a cluster whose Rollout CRD has no ``plugins`` leaves of a Gateway API plugin router
    manifest = routed()
    manifest["spec"]["strategy"]["canary"]["trafficRouting"] = {"maxTrafficWeight": 100}
    assert lint(manifest) == [
        f"{C}.trafficRouting: names no traffic router (set one, or leave trafficRouting out for a canary by pod "
        "count); if the manifest sets one, the cluster's Rollout CRD dropped it: its schema has no such field"
    ]


def test_canary_and_stable_services_must_differ() -> None:
    assert lint(routed(stableService="web-canary")) == [
        f"{C}.stableService: 'web-canary' is also the canaryService (two different services are required)"
    ]


def test_features_that_need_a_traffic_router() -> None:
    manifest = canary(
        scaleDownDelaySeconds=30,
        dynamicStableScale=True,
        steps=[
            {"setCanaryScale": {"replicas": 1}},
            {"setHeaderRoute": {"name": "h"}},
            {"setMirrorRoute": {"name": "m"}},
        ],
    )
    assert lint(manifest) == [
        f"{C}.scaleDownDelaySeconds: can only be used with trafficRouting",
        f"{C}.dynamicStableScale: can only be used with trafficRouting",
        f"{C}.steps[0].setCanaryScale: requires trafficRouting (only a traffic router can do this)",
        f"{C}.steps[1].setHeaderRoute: requires trafficRouting (only a traffic router can do this)",
        f"{C}.steps[2].setMirrorRoute: requires trafficRouting (only a traffic router can do this)",
    ]


def test_dynamic_stable_scale_excludes_scale_down_delay() -> None:
    assert lint(routed(scaleDownDelaySeconds=30, dynamicStableScale=True)) == [
        f"{C}.dynamicStableScale: cannot be used together with scaleDownDelaySeconds"
    ]


def test_header_and_mirror_routes_need_managed_routes() -> None:
    manifest = routed(steps=[{"setHeaderRoute": {"name": "testers"}}])
    assert lint(manifest) == [
        f"{C}.trafficRouting.managedRoutes: required field is missing "
        "(setHeaderRoute and setMirrorRoute steps name a route declared here)"
    ]


def test_a_route_missing_from_managed_routes() -> None:
    manifest = routed(steps=[{"setHeaderRoute": {"name": "testers"}}, {"setMirrorRoute": {"name": "mirror"}}])
    manifest["spec"]["strategy"]["canary"]["trafficRouting"]["managedRoutes"] = [{"name": "testers"}]
    assert lint(manifest) == [
        f"{C}.steps[1].setMirrorRoute.name: 'mirror' is not in trafficRouting.managedRoutes (declared: testers)"
    ]


def test_duplicate_managed_routes() -> None:
    manifest = routed()
    manifest["spec"]["strategy"]["canary"]["trafficRouting"]["managedRoutes"] = [{"name": "a"}, {"name": "a"}]
    assert lint(manifest) == [f"{C}.trafficRouting.managedRoutes[1].name: 'a' is listed twice"]


def test_set_weight_above_max_traffic_weight() -> None:
    manifest = routed(steps=[{"setWeight": 60}])
    manifest["spec"]["strategy"]["canary"]["trafficRouting"]["maxTrafficWeight"] = 50
    assert lint(manifest) == [f"{C}.steps[0].setWeight: 60 is out of range 0..50 (trafficRouting.maxTrafficWeight)"]


def test_pause_duration_must_parse() -> None:
    assert lint(canary(steps=[{"pause": {"duration": "ten minutes"}}])) == [
        f'{C}.steps[0].pause.duration: "ten minutes" is not a duration (use seconds or a string like 30s, 10m, 1h)'
    ]


def test_anti_affinity_one_of_and_weight() -> None:
    both = {
        "preferredDuringSchedulingIgnoredDuringExecution": {"weight": 0},
        "requiredDuringSchedulingIgnoredDuringExecution": {},
    }
    assert lint(canary(antiAffinity=both)) == [
        f"{C}.antiAffinity: set exactly one of preferredDuringSchedulingIgnoredDuringExecution, "
        "requiredDuringSchedulingIgnoredDuringExecution",
        f"{C}.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight: 0 is out of range 1..100",
    ]
    assert lint(canary(antiAffinity={})) == [
        f"{C}.antiAffinity: set exactly one of preferredDuringSchedulingIgnoredDuringExecution, "
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]


def test_experiment_step_weight_needs_traffic_routing_and_unique_names() -> None:
    templates = [{"name": "a", "specRef": "canary", "weight": 10}, {"name": "a", "specRef": "stable"}]
    assert lint(canary(steps=[{"experiment": {"templates": templates}}])) == [
        f"{C}.steps[0].experiment.templates[0].weight: requires trafficRouting (without it no traffic is split)",
        f"{C}.steps[0].experiment.templates[1].name: 'a' is listed twice",
    ]


def test_experiment_template_weight_and_service_are_warned_as_not_supported_yet() -> None:
    templates = [{"name": "a", "specRef": "canary", "weight": 10, "service": {"name": "exp-a"}}]
    assert lint(routed(steps=[{"experiment": {"templates": templates}}])) == [
        f"{C}.steps[0].experiment.templates[0].weight: is not supported yet: the experiment's pods run and are "
        "analysed, but get no share of the traffic",
        f"{C}.steps[0].experiment.templates[0].service: is not supported yet: no Service is created for the "
        "experiment's pods",
    ]


def test_background_analysis_starting_step_beyond_the_steps() -> None:
    manifest = canary(analysis={"templates": [{"templateName": "rate"}], "startingStep": 3}, steps=[{"setWeight": 5}])
    assert lint(manifest) == [f"{C}.analysis.startingStep: 3 is out of range 0..1 (there are 1 steps)"]


# --- analysis references ------------------------------------------------------------------------------------


def step_analysis(*names: str, args: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    analysis: dict[str, Any] = {"templates": [{"templateName": name} for name in names]}
    if args is not None:
        analysis["args"] = args
    return canary(steps=[{"setWeight": 20}, {"analysis": analysis}])


def test_duplicate_template_names_in_a_step() -> None:
    assert lint(step_analysis("rate", "rate")) == [
        f"{C}.steps[1].analysis.templates[1].templateName: 'rate' is listed twice"
    ]


def test_a_template_argument_without_value_must_be_supplied() -> None:
    rate = template(args=[{"name": "service-name"}, {"name": "threshold", "value": "0.01"}])
    assert lint(rate, step_analysis("rate")) == [
        f"{C}.steps[1].analysis.args: argument 'service-name' of AnalysisTemplate 'rate' has no value and is "
        "not supplied here"
    ]
    supplied = step_analysis("rate", args=[{"name": "service-name", "value": "web"}])
    assert lint(rate, supplied) == []


def test_supplied_arguments_the_template_does_not_declare() -> None:
    rate = template(args=[{"name": "service-name", "value": "web"}])
    manifest = step_analysis("rate", args=[{"name": "service", "value": "web"}])
    assert lint(rate, manifest) == [
        f"{C}.steps[1].analysis.args[0].name: 'service' is not an argument of AnalysisTemplate 'rate' "
        "(declared: service-name)"
    ]


def test_argument_checks_are_skipped_when_the_template_is_not_in_the_lint_set() -> None:
    assert lint(step_analysis("rate", args=[{"name": "anything", "value": "x"}])) == []


def test_undeclared_arguments_are_not_judged_when_one_of_several_templates_is_missing() -> None:
    rate = template(args=[{"name": "service-name", "value": "web"}])
    manifest = step_analysis("rate", "elsewhere", args=[{"name": "other", "value": "x"}])
    assert lint(rate, manifest) == []


def test_arguments_are_merged_across_templates() -> None:
    rate = template(args=[{"name": "service-name"}])
    latency = template("latency", args=[{"name": "quantile", "value": "0.99"}])
    latency["spec"]["metrics"][0]["name"] = "latency"
    manifest = step_analysis(
        "rate", "latency", args=[{"name": "service-name", "value": "web"}, {"name": "quantile", "value": "0.9"}]
    )
    assert lint(rate, latency, manifest) == []


def test_background_analysis_and_blue_green_analyses_are_checked_too() -> None:
    rate = template(args=[{"name": "service-name"}])
    background = canary(analysis={"templates": [{"templateName": "rate"}]})
    assert lint(rate, background) == [
        f"{C}.analysis.args: argument 'service-name' of AnalysisTemplate 'rate' has no value and is not supplied here"
    ]
    bg = blue_green(
        prePromotionAnalysis={"templates": [{"templateName": "rate"}]},
        postPromotionAnalysis={
            "templates": [{"templateName": "rate"}],
            "args": [{"name": "service-name", "value": "x"}],
        },
    )
    assert lint(rate, bg) == [
        f"{B}.prePromotionAnalysis.args: argument 'service-name' of AnalysisTemplate 'rate' has no value and is "
        "not supplied here"
    ]


def test_cluster_templates_are_found_by_cluster_scope_only() -> None:
    shared = template("shared", args=[{"name": "service-name"}])
    shared["kind"] = "ClusterAnalysisTemplate"
    manifest = canary(steps=[{"analysis": {"templates": [{"templateName": "shared", "clusterScope": True}]}}])
    assert lint(shared, manifest) == [
        f"{C}.steps[0].analysis.args: argument 'service-name' of AnalysisTemplate 'shared' has no value and is "
        "not supplied here"
    ]
    namespaced = canary(steps=[{"analysis": {"templates": [{"templateName": "shared"}]}}])
    assert lint(shared, namespaced) == []


def test_templates_in_another_namespace_do_not_resolve() -> None:
    rate = template(args=[{"name": "service-name"}])
    rate["metadata"]["namespace"] = "monitoring"
    assert lint(rate, step_analysis("rate")) == []


def test_inline_analysis_must_end() -> None:
    rate = template(interval="1m")
    assert lint(rate, step_analysis("rate")) == [
        f"{C}.steps[1].analysis: AnalysisTemplate 'rate' has metric 'error-rate' which runs indefinitely "
        "(interval without count); set count, or use it as background analysis"
    ]
    assert lint(rate, canary(analysis={"templates": [{"templateName": "rate"}]})) == []


def test_metric_names_must_be_unique_across_merged_templates() -> None:
    assert lint(template("a"), template("b"), step_analysis("a", "b")) == [
        f"{C}.steps[1].analysis: metric 'error-rate' is defined by both 'a' and 'b' "
        "(metric names must be unique within one analysis)"
    ]


def test_field_ref_arguments_must_name_downward_api_metadata() -> None:
    args = [
        {"name": "ok", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "bad", "valueFrom": {"fieldRef": {"fieldPath": "metadata.ownerReferences"}}},
    ]
    assert lint(step_analysis("rate", args=args)) == [
        f"{C}.steps[1].analysis.args[1].valueFrom.fieldRef.fieldPath: 'metadata.ownerReferences' is not supported "
        "(use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'] or metadata.annotations['KEY'])"
    ]


def test_an_argument_supplied_twice() -> None:
    args = [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]
    assert lint(step_analysis("rate", args=args)) == [f"{C}.steps[1].analysis.args[1].name: 'a' is supplied twice"]


def test_experiment_step_analyses_are_checked() -> None:
    rate = template(args=[{"name": "service-name"}])
    step = {
        "experiment": {
            "templates": [{"name": "c", "specRef": "canary"}],
            "analyses": [{"name": "a", "templateName": "rate"}],
        }
    }
    assert lint(rate, canary(steps=[step])) == [
        f"{C}.steps[0].experiment.analyses[0].args: argument 'service-name' of AnalysisTemplate 'rate' has no "
        "value and is not supplied here"
    ]


# --- templates ----------------------------------------------------------------------------------------------

T = "rollout.yaml: AnalysisTemplate/rate: spec"


def test_duplicate_metric_and_argument_names() -> None:
    rate = template(args=[{"name": "a"}, {"name": "a"}])
    rate["spec"]["metrics"].append(rate["spec"]["metrics"][0])
    assert lint(rate) == [
        f"{T}.metrics[1].name: metric name 'error-rate' is already used by spec.metrics[0]",
        f"{T}.args[1].name: argument 'a' is already used by spec.args[0]",
    ]


def test_no_metrics() -> None:
    rate = template()
    rate["spec"]["metrics"] = []
    assert lint(rate) == [f"{T}.metrics: must have at least 1 metric"]


def test_count_against_limits_and_interval() -> None:
    rate = template(count=2, failureLimit=3, inconclusiveLimit=4)
    assert lint(rate) == [
        f"{T}.metrics[0].interval: required field is missing (count is 2, so measurements repeat)",
        f"{T}.metrics[0].count: 2 is less than failureLimit (3); the limit could never be hit",
        f"{T}.metrics[0].count: 2 is less than inconclusiveLimit (4); the limit could never be hit",
    ]


def test_zero_interval() -> None:
    assert lint(template(interval="0s")) == [f"{T}.metrics[0].interval: must be greater than 0"]


def test_placeholders_must_name_declared_arguments() -> None:
    rate = template(args=[{"name": "service-name"}], successCondition="result[0] < {{ args.threshold }}")
    rate["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = 'up{service="{{args.service-name}}"}'
    assert lint(rate) == [
        f"{T}.metrics[0].successCondition: '{{{{ args.threshold }}}}' refers to an undeclared argument "
        "(declared: service-name)"
    ]


def test_placeholders_may_fill_numbers() -> None:
    rate = template(args=[{"name": "n", "value": "3"}], count="{{args.n}}", interval="1m")
    assert lint(rate) == []


def test_dry_run_and_retention_name_metrics() -> None:
    rate = template()
    rate["spec"]["dryRun"] = [{"metricName": "*"}, {"metricName": "latency"}]
    rate["spec"]["measurementRetention"] = [{"metricName": "error-rate", "limit": 20}]
    assert lint(rate) == [
        f"{T}.dryRun[1].metricName: 'latency' is not a metric of this template (metrics: error-rate; or '*' for all)"
    ]


def test_an_analysis_run_needs_every_argument_resolved() -> None:
    run = template(args=[{"name": "service-name"}])
    run["kind"] = "AnalysisRun"
    assert lint(run) == [
        "rollout.yaml: AnalysisRun/rate: spec.args[0]: argument 'service-name' has no value or valueFrom"
    ]


# --- experiments and the lint set ---------------------------------------------------------------------------


def experiment(**spec: Any) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    base = {"templates": [{"name": "baseline", "selector": {"matchLabels": {"app": "web"}}, "template": pod}]}
    return {
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "exp"},
        "spec": base | spec,
    }


def test_experiment_checks() -> None:
    manifest = experiment()
    manifest["spec"]["templates"].append(manifest["spec"]["templates"][0])
    manifest["spec"]["analyses"] = [{"name": "a", "templateName": "rate", "args": [{"name": "x", "value": "1"}]}]
    assert lint(manifest, template()) == [
        "rollout.yaml: Experiment/exp: spec.templates[1].name: template name 'baseline' is already used by "
        "spec.templates[0]",
        "rollout.yaml: Experiment/exp: spec.analyses[0].args[0].name: 'x' is not an argument of AnalysisTemplate "
        "'rate' (declared: none)",
    ]


def test_experiment_template_labels_and_selector() -> None:
    manifest = experiment()
    manifest["spec"]["templates"][0]["selector"] = {"matchLabels": {"app": "api"}}
    assert lint(manifest) == [
        "rollout.yaml: Experiment/exp: spec.templates[0].template.metadata.labels: selector does not match "
        "template labels (missing app=api)"
    ]


def test_duplicate_objects_in_one_lint_set() -> None:
    assert lint(rollout(), rollout()) == [
        f"{P}: metadata.name: Rollout/web is already defined in rollout.yaml (document 1)"
    ]


def test_documents_with_field_errors_are_not_cross_checked() -> None:
    manifest = rollout(canary={"steps": [{"setWeight": 500}]}, blueGreen={})
    assert lint(manifest) == [f"{C}.steps[0].setWeight: 500 is out of range 0..100"]


@pytest.mark.parametrize(
    "kind", ["AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment", "Rollout"]
)
def test_check_dispatches_every_kind(kind: str) -> None:
    manifest = experiment() if kind == "Experiment" else rollout() if kind == "Rollout" else template()
    manifest["kind"] = kind
    [document] = load_text(dump(manifest), "x.yaml")
    assert document.model is not None
    assert check(document.model, TemplateIndex.of([document.model])) == []
    assert check(object()) == []


def test_set_weight_may_exceed_100_when_max_traffic_weight_is_larger() -> None:
    manifest = routed(steps=[{"setWeight": 250}, {"pause": {}}])
    manifest["spec"]["strategy"]["canary"]["trafficRouting"]["maxTrafficWeight"] = 1000
    assert lint(manifest) == []
