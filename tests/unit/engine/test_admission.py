"""What each mode can do: the registry matches the wiring, and `admit` refuses the rest naming field and mode."""

from __future__ import annotations

from typing import Any

import pytest

from headway.engine.admission import Mode, admit, check, run_problem
from headway.spec.analysis import AnalysisRunSpec, Metric
from headway.spec.load import Severity, load_document, load_text
from tests.unit.spec.manifests import canary, dump, rollout, template

PROXY: dict[str, Any] = {"plugins": {"headway.dev/proxy": {}}}
ISTIO = {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}
NGINX = {"nginx": {"stableIngress": "web"}}
SMI = {"smi": {"rootService": "web"}}
SERVICES = {"canaryService": "web-canary", "stableService": "web-stable"}
HEADER = {"setHeaderRoute": {"name": "testers", "match": [{"headerName": "X-Canary", "headerValue": {"exact": "1"}}]}}
MIRROR = {"setMirrorRoute": {"name": "mirror", "match": [{"path": {"prefix": "/"}}], "percentage": 10}}


def routed(routing: dict[str, Any], *steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    names = [step[next(iter(step))]["name"] for step in steps if "setHeaderRoute" in step or "setMirrorRoute" in step]
    traffic = {**routing, "managedRoutes": [{"name": name} for name in names]} if names else routing
    return canary(**SERVICES, trafficRouting=traffic, steps=[{"setWeight": 20}, *steps], **fields)


def findings(manifest: dict[str, Any], mode: Mode) -> list[tuple[str, str, Severity]]:
    document = load_document(manifest)
    assert document.model is not None, document.problems
    return [(f.path, f.message, f.severity) for f in check(document.model, mode)]


def errors(manifest: dict[str, Any], mode: Mode) -> list[str]:
    return [path for path, _, severity in findings(manifest, mode) if severity is Severity.ERROR]


# --- per case, per mode ------------------------------------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    # (id, manifest, embedded errors, kubernetes errors)
    ("no-router", rollout(), [], []),
    ("proxy", routed(PROXY), [], ["spec.strategy.canary.trafficRouting.plugins[headway.dev/proxy]"]),
    ("istio", routed(ISTIO), ["spec.strategy.canary.trafficRouting.istio"], []),
    (
        "traefik",
        routed({"traefik": {"weightedTraefikServiceName": "web"}}),
        ["spec.strategy.canary.trafficRouting.traefik"],
        ["spec.strategy.canary.trafficRouting.traefik"],
    ),
    (
        "nginx+smi",
        routed({**NGINX, **SMI}),
        ["spec.strategy.canary.trafficRouting.nginx", "spec.strategy.canary.trafficRouting.smi"],
        [],
    ),
    (
        "header-on-smi",
        routed(SMI, HEADER),
        ["spec.strategy.canary.trafficRouting.smi"],
        ["spec.strategy.canary.steps[1].setHeaderRoute"],
    ),
    (
        "mirror-on-nginx",
        routed(NGINX, MIRROR),
        ["spec.strategy.canary.trafficRouting.nginx"],
        ["spec.strategy.canary.steps[1].setMirrorRoute"],
    ),
    (
        "header-on-proxy",
        routed(PROXY, HEADER, MIRROR),
        [],
        ["spec.strategy.canary.trafficRouting.plugins[headway.dev/proxy]"],
    ),
    (
        "experiment-step",
        rollout(canary={"steps": [{"experiment": {"templates": [{"name": "c", "specRef": "canary"}]}}]}),
        ["spec.strategy.canary.steps[0].experiment"],
        [],
    ),
    (
        "plugin-step",
        rollout(canary={"steps": [{"plugin": {"name": "example.com/step"}}]}),
        ["spec.strategy.canary.steps[0].plugin"],
        ["spec.strategy.canary.steps[0].plugin"],
    ),
    (
        "max-traffic-weight",
        routed({**PROXY, "maxTrafficWeight": 1000}),
        ["spec.strategy.canary.trafficRouting.maxTrafficWeight"],
        [
            "spec.strategy.canary.trafficRouting.plugins[headway.dev/proxy]",
            "spec.strategy.canary.trafficRouting.maxTrafficWeight",
        ],
    ),
]


@pytest.mark.parametrize(
    ("manifest", "embedded", "kubernetes"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_each_mode_refuses_what_it_cannot_do(
    manifest: dict[str, Any], embedded: list[str], kubernetes: list[str]
) -> None:
    assert errors(manifest, Mode.EMBEDDED) == embedded
    assert errors(manifest, Mode.KUBERNETES) == kubernetes


def header(name: str, *headers: str) -> dict[str, Any]:
    match = [{"headerName": h, "headerValue": {"exact": "1"}} for h in headers] or None
    return {"setHeaderRoute": {"name": name, "match": match}}


@pytest.mark.parametrize(
    ("steps", "kubernetes"),
    [
        ([header("testers", "X-Tester")], []),
        ([header("testers", "X-Tester", "X-Region")], ["spec.strategy.canary.steps[1].setHeaderRoute.match"]),
        (
            [header("testers", "X-Tester"), header("beta", "X-Beta")],
            ["spec.strategy.canary.steps[2].setHeaderRoute.name"],
        ),
        ([header("testers", "X-Tester"), header("testers", "X-Other")], []),
        ([header("testers", "X-Tester"), header("testers"), header("beta", "X-Beta")], []),
    ],
    ids=["one-header", "two-matches", "second-route", "same-route-changed", "removed-then-another"],
)
def test_nginx_header_routes_are_refused_beyond_one_header_and_one_route(
    steps: list[dict[str, Any]], kubernetes: list[str]
) -> None:
    """ingress-nginx canaries hold one canary-by-header: two matches failed mid-rollout (PermanentError), and a
    second route silently replaced the first. Istio holds both, so the same steps pass there."""
    assert errors(routed(NGINX, *steps), Mode.KUBERNETES) == kubernetes
    assert errors(routed(ISTIO, *steps), Mode.KUBERNETES) == []


def test_the_nginx_header_refusals_say_what_to_do() -> None:
    manifest = routed(NGINX, header("testers", "X-Tester", "X-Region"), header("beta", "X-Beta"))
    messages = {path: message for path, message, _ in findings(manifest, Mode.KUBERNETES)}

    assert messages["spec.strategy.canary.steps[1].setHeaderRoute.match"] == (
        "nginx matches at most 1 header per route in the kubernetes mode (got 2)"
    )
    assert "'beta' would replace 'testers'" in messages["spec.strategy.canary.steps[2].setHeaderRoute.name"]


def test_the_message_names_the_mode_and_the_way_out() -> None:
    ((path, message, severity),) = findings(routed(ISTIO), Mode.EMBEDDED)

    assert path == "spec.strategy.canary.trafficRouting.istio"
    assert message.startswith("the embedded mode cannot drive istio")
    assert "headway.dev/proxy" in message and severity is Severity.ERROR


def test_workload_ref_only_in_kubernetes() -> None:
    manifest = rollout()
    manifest["spec"].pop("template")
    manifest["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}

    assert errors(manifest, Mode.EMBEDDED) == ["spec.workloadRef"]
    assert errors(manifest, Mode.KUBERNETES) == []


def test_what_has_no_effect_is_a_warning() -> None:
    metadata = {"labels": {"role": "canary"}}
    manifest = routed(
        PROXY, canaryMetadata=metadata, antiAffinity={"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 1}}
    )

    embedded = findings(manifest, Mode.EMBEDDED)
    kubernetes = findings(
        routed(ISTIO, antiAffinity={"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 1}}), Mode.KUBERNETES
    )

    assert [(p, s) for p, _, s in embedded] == [
        ("spec.strategy.canary.canaryMetadata", Severity.WARNING),
        ("spec.strategy.canary.antiAffinity", Severity.WARNING),
    ]
    assert [(p, s) for p, _, s in kubernetes] == [("spec.strategy.canary.antiAffinity", Severity.WARNING)]


def test_a_preview_service_has_no_endpoint_in_embedded_mode() -> None:
    manifest = rollout(blueGreen={"activeService": "web-active", "previewService": "web-preview"})

    assert [(p, s) for p, _, s in findings(manifest, Mode.EMBEDDED)] == [
        ("spec.strategy.blueGreen.previewService", Severity.WARNING)
    ]
    assert findings(manifest, Mode.KUBERNETES) == []


# --- analysis ------------------------------------------------------------------------------------------------


def judge(source: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"alpha": 0.01}
    if source is not None:
        config["source"] = source
    return {"plugin": {"headway.dev/judge": config}}


@pytest.mark.parametrize(
    ("provider", "embedded", "kubernetes"),
    [
        ({"prometheus": {"address": "http://prom:9090", "query": "up"}}, True, True),
        ({"plugin": {"proxy": {}}}, True, False),
        (judge("proxy"), True, False),
        (judge("prometheus"), True, True),
        (judge(None), False, False),
        ({"datadog": {"query": "avg:errors"}}, False, False),
        ({"plugin": {"example.com/metric": {}}}, False, False),
    ],
    ids=["prometheus", "proxy", "judge-on-proxy", "judge-on-prometheus", "judge-without-source", "datadog", "plugin"],
)
def test_a_template_runs_only_where_its_provider_does(
    provider: dict[str, Any], embedded: bool, kubernetes: bool
) -> None:
    manifest = template(provider=provider)

    assert (not errors(manifest, Mode.EMBEDDED), not errors(manifest, Mode.KUBERNETES)) == (embedded, kubernetes)


def test_a_resolved_run_says_why_the_mode_cannot_measure_it() -> None:
    metric = Metric.model_validate({"name": "errors", "provider": {"plugin": {"proxy": {}}}})
    spec = AnalysisRunSpec(metrics=[metric])

    assert run_problem(spec, Mode.EMBEDDED) is None
    problem = run_problem(spec, Mode.KUBERNETES)
    assert problem is not None and "metrics[0].provider" in problem and "kubernetes mode" in problem


def test_experiments_are_not_run_in_embedded_mode() -> None:
    experiment = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "exp"},
        "spec": {
            "templates": [
                {
                    "name": "a",
                    "selector": {"matchLabels": {"app": "a"}},
                    "template": {
                        "metadata": {"labels": {"app": "a"}},
                        "spec": {"containers": [{"name": "a", "image": "a"}]},
                    },
                }
            ]
        },
    }

    assert errors(experiment, Mode.EMBEDDED) == ["kind"]
    assert errors(experiment, Mode.KUBERNETES) == []


def test_admit_locates_the_problem_in_its_file() -> None:
    (document,) = load_text(dump(routed(ISTIO)), "rollout.yaml")

    (problem,) = admit(document, Mode.EMBEDDED)

    assert (problem.file, problem.kind, problem.name) == ("rollout.yaml", "Rollout", "web")
    assert problem.line is not None and problem.is_error
