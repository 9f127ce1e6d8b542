"""Numbers the engine can handle, and only those, pass admission (issue #10, case 5; issue #11, messages).

Counts, replicas and ``*Seconds`` fields are Argo's int32; durations are at most Go's ``time.Duration``
(2562047h, about 292 years), which keeps every timestamp the engine computes inside Python's datetime range.
The limits live in the models, so lint, simulate, apply and the controller all get them. Integers are strict,
as the API server is: ``setWeight: "20"`` is refused, not quietly read as 20.
"""

from __future__ import annotations

from typing import Any

import pytest

from headway.spec.analysis import resolve_int
from headway.spec.base import INT32_MAX, MAX_DURATION_SECONDS, parse_duration
from headway.spec.status import Phase
from tests.unit.core.driver import rollout as driver_rollout
from tests.unit.core.driver import started
from tests.unit.spec.manifests import canary, dump, lint, lint_text, rollout, routed, template

P = "rollout.yaml: Rollout/web"
C = f"{P}: spec.strategy.canary"
BIG = 300_000_000_000
INT32 = f"0..{INT32_MAX}"


def with_spec(**fields: Any) -> dict[str, Any]:
    manifest = rollout()
    manifest["spec"].update(fields)
    return manifest


# --- the cases of the issue --------------------------------------------------------------------------------------


def test_a_pause_longer_than_any_clock_is_refused_naming_the_field_and_the_limit() -> None:
    assert lint(canary(steps=[{"pause": {"duration": "100000000h"}}])) == [
        f'{C}.steps[0].pause.duration: "100000000h" is longer than the longest duration allowed '
        "(2562047h, about 292 years)"
    ]


def test_a_progress_deadline_beyond_int32_is_refused() -> None:
    assert lint(with_spec(progressDeadlineSeconds=BIG)) == [
        f"{P}: spec.progressDeadlineSeconds: {BIG} is out of range {INT32}"
    ]


def test_replicas_are_int32() -> None:
    assert lint(with_spec(replicas=3_000_000_000)) == [f"{P}: spec.replicas: 3000000000 is out of range {INT32}"]
    assert lint(with_spec(replicas=INT32_MAX)) == []


def test_the_longest_pause_allowed_runs_passes_without_overflow() -> None:
    """Before, a pause past year 9999 raised OverflowError on every pass; the longest allowed one just waits."""
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2562047h"}}]}}
    w = started(driver_rollout(strategy, progressDeadlineSeconds=INT32_MAX))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    decision = w.step()  # the pass that computes when the pause ends
    assert w.status.phase == Phase.PAUSED
    assert decision.requeue_after is None or decision.requeue_after > 0


# --- every numeric field ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "path"),
    [
        pytest.param(with_spec(minReadySeconds=BIG), "spec.minReadySeconds", id="minReadySeconds"),
        pytest.param(with_spec(revisionHistoryLimit=BIG), "spec.revisionHistoryLimit", id="revisionHistoryLimit"),
        pytest.param(
            with_spec(rollbackWindow={"revisions": BIG}), "spec.rollbackWindow.revisions", id="rollbackWindow"
        ),
        pytest.param(
            routed(scaleDownDelaySeconds=BIG), "spec.strategy.canary.scaleDownDelaySeconds", id="scaleDownDelay"
        ),
        pytest.param(
            canary(abortScaleDownDelaySeconds=BIG),
            "spec.strategy.canary.abortScaleDownDelaySeconds",
            id="abortScaleDownDelay",
        ),
        pytest.param(
            canary(scaleDownDelayRevisionLimit=BIG),
            "spec.strategy.canary.scaleDownDelayRevisionLimit",
            id="scaleDownDelayRevisionLimit",
        ),
        pytest.param(canary(maxSurge=BIG), "spec.strategy.canary.maxSurge", id="maxSurge"),
        pytest.param(
            routed(steps=[{"setCanaryScale": {"replicas": BIG}}]),
            "spec.strategy.canary.steps[0].setCanaryScale.replicas",
            id="setCanaryScale",
        ),
        pytest.param(
            routed(trafficRouting={"istio": {}, "maxTrafficWeight": BIG}),
            "spec.strategy.canary.trafficRouting.maxTrafficWeight",
            id="maxTrafficWeight",
        ),
        pytest.param(
            canary(analysis={"templates": [{"templateName": "t"}], "startingStep": BIG}),
            "spec.strategy.canary.analysis.startingStep",
            id="startingStep",
        ),
        pytest.param(
            rollout(blueGreen={"activeService": "a", "autoPromotionSeconds": BIG}),
            "spec.strategy.blueGreen.autoPromotionSeconds",
            id="autoPromotionSeconds",
        ),
        pytest.param(
            rollout(blueGreen={"activeService": "a", "previewReplicaCount": BIG}),
            "spec.strategy.blueGreen.previewReplicaCount",
            id="previewReplicaCount",
        ),
    ],
)
def test_every_rollout_count_and_seconds_field_is_int32(manifest: dict[str, Any], path: str) -> None:
    found = lint(manifest)
    assert any(line.startswith(f"{P}: {path}: {BIG} is out of range ") for line in found), found


@pytest.mark.parametrize(
    ("metric", "field", "message"),
    [
        pytest.param({"count": BIG}, "count", f"{BIG} is out of range 0..{INT32_MAX}", id="count"),
        pytest.param({"count": str(BIG)}, "count", f"{BIG} is out of range 0..{INT32_MAX}", id="count-string"),
        pytest.param({"failureLimit": BIG}, "failureLimit", f"{BIG} is out of range -1..{INT32_MAX}", id="limit"),
        pytest.param(
            {"consecutiveErrorLimit": BIG}, "consecutiveErrorLimit", f"{BIG} is out of range 0..", id="errors"
        ),
        pytest.param(
            {"interval": "100000000h"}, "interval", '"100000000h" is longer than the longest duration', id="interval"
        ),
        pytest.param(
            {"initialDelay": 10**20}, "initialDelay", "100000000000000000000 is longer than the longest", id="delay"
        ),
    ],
)
def test_every_metric_count_and_duration_is_bounded(metric: dict[str, Any], field: str, message: str) -> None:
    [line] = lint(template(**metric))
    assert line.startswith(f"rollout.yaml: AnalysisTemplate/rate: spec.metrics[0].{field}: {message}"), line


def test_provider_timeouts_and_retention_are_bounded() -> None:
    web = {"web": {"url": "http://x", "timeoutSeconds": BIG}}
    [line] = lint(template(provider=web))
    assert line.endswith(f"spec.metrics[0].provider.web.timeoutSeconds: {BIG} is out of range {INT32}")
    manifest = template()
    manifest["spec"]["measurementRetention"] = [{"metricName": "error-rate", "limit": BIG}]
    assert lint(manifest)[0].endswith(f"spec.measurementRetention[0].limit: {BIG} is out of range {INT32}")


def test_a_placeholder_resolved_beyond_int32_is_refused_when_the_run_starts() -> None:
    with pytest.raises(ValueError, match=f"{BIG} is out of range -1..{INT32_MAX}"):
        resolve_int("{{args.n}}", {"n": str(BIG)})


def test_durations_up_to_the_limit_parse_and_beyond_it_do_not() -> None:
    assert parse_duration("2562047h") == 2562047 * 3600
    assert parse_duration(MAX_DURATION_SECONDS) == MAX_DURATION_SECONDS
    for too_long in ("2562048h", MAX_DURATION_SECONDS + 1, "9" * 200 + "s", float("inf")):
        with pytest.raises(ValueError, match=r"longer than the longest duration|is not a duration"):
            parse_duration(too_long)
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(float("nan"))


# --- strict integers, messages as YAML values ----------------------------------------------------------------------


def test_a_quoted_number_is_refused_where_argo_has_an_integer() -> None:
    assert lint(canary(steps=[{"setWeight": "20"}])) == [
        f'{C}.steps[0].setWeight: "20" is not an integer (remove the quotes)'
    ]
    assert lint(with_spec(replicas="3")) == [f'{P}: spec.replicas: "3" is not an integer (remove the quotes)']


def test_booleans_and_floats_are_not_integers_and_read_as_yaml() -> None:
    assert lint(canary(steps=[{"setWeight": True}])) == [f"{C}.steps[0].setWeight: true is not an integer"]
    assert lint(canary(steps=[{"setWeight": 20.5}])) == [f"{C}.steps[0].setWeight: 20.5 is not an integer"]


def test_messages_show_yaml_values_never_python_reprs() -> None:
    text = dump(canary(steps=[{"pause": {"duration": "x"}}])).replace("duration: x", "duration: 2024-01-01")
    found = lint_text(text) + lint(canary(steps=[{"pause": {"duration": True}}]))
    assert found == [
        f'{C}.steps[0].pause.duration: "2024-01-01" is not a duration (use seconds or a string like 30s, 10m, 1h)',
        f"{C}.steps[0].pause.duration: true is not a duration (use seconds or a string like 30s, 10m, 1h)",
    ]
    assert not any("True" in line or "datetime" in line for line in found)


# --- step kinds as Argo combines them ----------------------------------------------------------------------------


HEADER = {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}]}
MIRROR = {"name": "shadow", "percentage": 10, "match": [{"method": {"exact": "GET"}}]}
ROUTES = {"istio": {"virtualService": {"name": "web"}}, "managedRoutes": [{"name": "beta"}, {"name": "shadow"}]}


@pytest.mark.parametrize(
    "step",
    [
        pytest.param({"setCanaryScale": {"replicas": 1}, "setHeaderRoute": HEADER}, id="header"),
        pytest.param({"setCanaryScale": {"weight": 10}, "setMirrorRoute": MIRROR}, id="mirror"),
        pytest.param({"setCanaryScale": {"replicas": 1}, "setWeight": 0}, id="weight"),
    ],
)
def test_set_canary_scale_may_accompany_another_step_kind_as_in_argo(step: dict[str, Any]) -> None:
    assert lint(routed(steps=[step, {"pause": {}}], trafficRouting=ROUTES)) == []


@pytest.mark.parametrize(
    ("step", "given"),
    [
        pytest.param({"setWeight": 10, "pause": {}}, "setWeight, pause", id="weight-pause"),
        pytest.param({"setWeight": 10, "setHeaderRoute": HEADER}, "setWeight, setHeaderRoute", id="weight-route"),
        pytest.param({"setHeaderRoute": HEADER, "setMirrorRoute": MIRROR}, "setHeaderRoute, setMirrorRoute", id="2"),
        pytest.param({}, "none", id="none"),
    ],
)
def test_two_step_kinds_other_than_set_canary_scale_are_refused(step: dict[str, Any], given: str) -> None:
    [line] = lint(routed(steps=[step], trafficRouting=ROUTES))
    assert line.startswith(f"{C}.steps[0]: set exactly one of setWeight, pause, analysis, experiment, ")
    assert line.endswith(f"(given: {given})")


def test_booleans_are_strict_as_for_the_api_server() -> None:
    """pydantic's lax mode read ``"yes"``, ``"on"`` or ``1`` as true."""
    for value, shown in (("yes", '"yes"'), (1, "1"), ("true", '"true"')):
        assert lint(with_spec(paused=value)) == [f"{P}: spec.paused: {shown} is not a boolean (use true or false)"]


@pytest.mark.parametrize("start", [1e300, "1e300", -5, float("nan")])
def test_a_range_query_start_must_be_a_time_a_datetime_can_hold(start: object) -> None:
    query = {"query": "up", "rangeQuery": {"start": start, "step": "1m"}}
    [line] = lint(template(provider={"prometheus": query}))
    assert "spec.metrics[0].provider.prometheus.rangeQuery.start: " in line
    assert line.endswith("is not a Unix time between 0 and 253402300799 (year 9999)")


def test_numbers_and_booleans_in_messages_read_as_yaml() -> None:
    text = dump(rollout()).replace("name: web\n", "name: .nan\n", 1)
    assert "metadata.name: expected a string, got a number (.nan) (quote it)" in lint_text(text)[0]
    affinity = {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": True}}
    assert lint(canary(steps=[{"setWeight": 50}], antiAffinity=affinity)) == [
        f"{C}.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight: true is out of range 1..100"
    ]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://gate.example/x", "http://", "http://a b", "gate.example"])
def test_a_gate_webhook_is_an_http_url_with_a_host(url: str) -> None:
    body = rollout()
    body["spec"]["webhooks"] = [{"name": "g", "type": "confirm-promotion", "url": url}]
    problems = [line for line in lint(body) if "spec.webhooks[0].url" in line]
    assert problems and "http:// or https:// URL" in problems[0], lint(body)
