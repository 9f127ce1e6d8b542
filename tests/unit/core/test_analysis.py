"""The AnalysisRun ladder, step by step, checked against Argo Rollouts' own cases.

Row sources (argoproj/argo-rollouts ``analysis/analysis_test.go``): ``TestGenerateMetricTasks*`` (ids ``tasks-*``),
``TestAssessMetricStatus*`` (``metric-*``), ``TestAssessRunStatus*`` (``run-*``), ``TestCalculateNextReconcile*``
(``next-*``), ``TestRunMeasurementsResetConsecutiveErrorCounter`` and ``TestTrimMeasurementHistory``. The
consecutiveSuccessLimit rows follow Argo's documented table (only failureLimit / only consecutiveSuccessLimit /
both). Rows with ids starting ``ours-`` are our own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway.core import analysis
from headway.spec.analysis import (
    AnalysisPhase,
    AnalysisRunSpec,
    AnalysisRunStatus,
    DryRun,
    Measurement,
    Metric,
    MetricResult,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
P = AnalysisPhase


def ago(seconds: float) -> str:
    return analysis.iso(NOW - timedelta(seconds=seconds))


def metric(name: str = "m", **fields: Any) -> Metric:
    return Metric.model_validate({"name": name, "provider": {"web": {"url": "http://example"}}, **fields})


def done(phase: AnalysisPhase, seconds_ago: float = 60, value: str = "99") -> Measurement:
    return Measurement(phase=phase, value=value, started_at=ago(seconds_ago), finished_at=ago(seconds_ago))


def running(seconds_ago: float = 60, resume_in: float | None = None) -> Measurement:
    resume = analysis.iso(NOW + timedelta(seconds=resume_in)) if resume_in is not None else None
    return Measurement(phase=P.RUNNING, started_at=ago(seconds_ago), resume_at=resume)


def result(name: str = "m", phase: AnalysisPhase = P.RUNNING, **fields: Any) -> MetricResult:
    return MetricResult(name=name, phase=phase, **fields)


@dataclass(frozen=True)
class Value:
    """A provider result (value, error or pending handle)."""

    value: Any = None
    error: str | None = None
    pending: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# --- generateMetricTasks ----------------------------------------------------------------------------------


class Tasks:
    @staticmethod
    def names(spec: AnalysisRunSpec, status: AnalysisRunStatus) -> list[str]:
        return [task.metric.name for task in analysis.due(spec, status, NOW)]


def run_status(*results: MetricResult, started: float | None = 300) -> AnalysisRunStatus:
    return AnalysisRunStatus(
        phase=P.RUNNING, metric_results=list(results), started_at=ago(started) if started is not None else None
    )


@pytest.mark.parametrize(
    ("seconds_ago", "expected"),
    [pytest.param(50, [], id="tasks-interval-within"), pytest.param(61, ["successRate"], id="tasks-interval-outside")],
)
def test_a_metric_is_due_once_its_interval_passed(seconds_ago: float, expected: list[str]) -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate", interval="60s")])
    status = run_status(result("successRate", measurements=[done(P.SUCCESSFUL, seconds_ago)], count=1, successful=1))

    assert Tasks.names(spec, status) == expected


def test_tasks_failing_sibling_stops_new_measurements() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate"), metric("latency")])

    assert Tasks.names(spec, run_status(result("latency", P.FAILED))) == []
    assert Tasks.names(spec, run_status()) == ["successRate", "latency"]


def test_tasks_no_interval_or_count_measures_once() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate")])
    measured = result("successRate", count=1, successful=1, measurements=[done(P.SUCCESSFUL, 50)])

    assert Tasks.names(spec, run_status(measured)) == []
    assert Tasks.names(spec, run_status(result("successRate"))) == ["successRate"]


def test_tasks_incomplete_measurement_is_resumed() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate")])
    status = run_status(result("successRate", measurements=[running(50)]))

    [task] = analysis.due(spec, status, NOW)

    assert task.pending is not None
    assert not task.cancel


@pytest.mark.parametrize(
    ("started", "expected"),
    [
        pytest.param(10, [], id="tasks-initial-delay-not-passed"),
        pytest.param(20, ["successRate"], id="tasks-initial-delay-passed"),
    ],
)
def test_tasks_honour_initial_delay(started: float, expected: list[str]) -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate", initialDelay="20s")])

    assert Tasks.names(spec, run_status(started=started)) == expected


def test_tasks_honour_resume_at() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate"), metric("successRate2")])
    status = run_status(
        result("successRate", measurements=[running(50, resume_in=10)]),
        result("successRate2", measurements=[running(50, resume_in=-10)]),
    )

    assert Tasks.names(spec, status) == ["successRate2"]


def test_tasks_an_error_is_retried_after_the_error_interval() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate")])

    stale = run_status(result("successRate", error=1, consecutive_error=1, measurements=[done(P.ERROR, 120)]))
    fresh = run_status(result("successRate", error=1, consecutive_error=1, measurements=[done(P.ERROR, 5)]))

    assert Tasks.names(spec, stale) == ["successRate"]
    assert Tasks.names(spec, fresh) == []


def test_tasks_terminating_cancels_in_flight_and_starts_nothing() -> None:
    spec = analysis.terminate(AnalysisRunSpec(metrics=[metric("a", interval="10s"), metric("b", interval="10s")]))
    status = run_status(result("a", measurements=[running(5)]), result("b", measurements=[done(P.SUCCESSFUL, 60)]))

    [task] = analysis.due(spec, status, NOW)

    assert (task.metric.name, task.cancel) == ("a", True)


# --- assessMetricStatus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    id: str
    metric: dict[str, Any]
    result: dict[str, Any]
    measurements: tuple[Measurement, ...]
    running: AnalysisPhase
    terminating: AnalysisPhase


SUCCESS = (done(P.SUCCESSFUL),)
METRIC_ROWS = [
    MetricRow("metric-no-measurements", {}, {}, (), P.PENDING, P.SUCCESSFUL),
    MetricRow("metric-in-flight", {}, {}, (done(P.SUCCESSFUL), running(0)), P.RUNNING, P.RUNNING),
    MetricRow(
        "metric-failure-limit-2-exceeded",
        {"failureLimit": 2, "interval": "60s"},
        {"failed": 3, "count": 3},
        (done(P.FAILED),),
        P.FAILED,
        P.FAILED,
    ),
    MetricRow(
        "metric-failure-limit-3-not-exceeded",
        {"failureLimit": 3, "interval": "60s"},
        {"failed": 3, "count": 3},
        (done(P.FAILED),),
        P.RUNNING,
        P.SUCCESSFUL,
    ),
    MetricRow(
        "metric-inconclusive-limit-2-exceeded",
        {"inconclusiveLimit": 2, "interval": "60s"},
        {"inconclusive": 3, "count": 3},
        (done(P.INCONCLUSIVE),),
        P.INCONCLUSIVE,
        P.INCONCLUSIVE,
    ),
    MetricRow(
        "metric-inconclusive-limit-3-not-exceeded",
        {"inconclusiveLimit": 3, "interval": "60s"},
        {"inconclusive": 3, "count": 3},
        (done(P.INCONCLUSIVE),),
        P.RUNNING,
        P.SUCCESSFUL,
    ),
    MetricRow(
        "metric-consecutive-errors-5-over-default-4",
        {"interval": "60s"},
        {"consecutive_error": 5, "count": 5},
        (done(P.ERROR),),
        P.ERROR,
        P.ERROR,
    ),
    MetricRow(
        "metric-consecutive-errors-4-at-default",
        {"interval": "60s"},
        {"consecutive_error": 4, "count": 5},
        (done(P.ERROR),),
        P.RUNNING,
        P.SUCCESSFUL,
    ),
    MetricRow(
        "metric-count-reached", {"count": 10}, {"successful": 10, "count": 10}, SUCCESS, P.SUCCESSFUL, P.SUCCESSFUL
    ),
    MetricRow(
        "metric-count-reached-with-inconclusives",
        {"count": 10, "interval": "1m"},
        {"successful": 5, "inconclusive": 5, "count": 10},
        SUCCESS,
        P.INCONCLUSIVE,
        P.INCONCLUSIVE,
    ),
    MetricRow(
        "ours-failure-limit-minus-1-never-fails",
        {"failureLimit": -1, "consecutiveSuccessLimit": 2, "interval": "1m"},
        {"failed": 9, "count": 9},
        (done(P.FAILED),),
        P.RUNNING,
        P.SUCCESSFUL,
    ),
    MetricRow(
        "consecutive-success-only-reached",
        {"failureLimit": -1, "consecutiveSuccessLimit": 3, "count": 10, "interval": "1m"},
        {"failed": 4, "successful": 3, "consecutive_success": 3, "count": 7},
        SUCCESS,
        P.SUCCESSFUL,
        P.SUCCESSFUL,
    ),
    MetricRow(
        "consecutive-success-only-count-exhausted-fails",
        {"failureLimit": -1, "consecutiveSuccessLimit": 3, "count": 5, "interval": "1m"},
        {"failed": 3, "successful": 2, "consecutive_success": 2, "count": 5},
        SUCCESS,
        P.FAILED,
        P.FAILED,
    ),
    MetricRow(
        "consecutive-success-and-failure-limit-count-exhausted-inconclusive",
        {"failureLimit": 3, "consecutiveSuccessLimit": 3, "count": 5, "interval": "1m"},
        {"failed": 2, "successful": 3, "consecutive_success": 2, "count": 5},
        SUCCESS,
        P.INCONCLUSIVE,
        P.INCONCLUSIVE,
    ),
    MetricRow(
        "consecutive-success-and-failure-limit-failures-win",
        {"failureLimit": 1, "consecutiveSuccessLimit": 3, "count": 5, "interval": "1m"},
        {"failed": 2, "successful": 0, "count": 2},
        (done(P.FAILED),),
        P.FAILED,
        P.FAILED,
    ),
]


@pytest.mark.parametrize("row", METRIC_ROWS, ids=lambda row: row.id)
def test_metric_phase_from_counters_and_limits(row: MetricRow) -> None:
    spec_metric = metric(**row.metric)
    measured = result(measurements=list(row.measurements), **row.result)

    assert analysis.assess_metric(spec_metric, measured, terminating=False) is row.running
    assert analysis.assess_metric(spec_metric, measured, terminating=True) is row.terminating


def test_a_completed_metric_keeps_its_phase() -> None:
    assert analysis.assess_metric(metric(), result(phase=P.FAILED), terminating=False) is P.FAILED


# --- measurements and counters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        pytest.param(P.ERROR, {"consecutive_error": 5, "error": 5, "count": 4}, id="error-counts-errors"),
        pytest.param(P.SUCCESSFUL, {"consecutive_error": 0, "error": 4, "count": 5}, id="success-resets"),
        pytest.param(P.FAILED, {"consecutive_error": 0, "error": 4, "count": 5}, id="failure-resets"),
        pytest.param(P.INCONCLUSIVE, {"consecutive_error": 0, "error": 4, "count": 5}, id="inconclusive-resets"),
    ],
)
def test_measurements_reset_the_consecutive_error_counter(phase: AnalysisPhase, expected: dict[str, int]) -> None:
    status = run_status(result("test", consecutive_error=4, count=4, error=4))

    recorded = analysis.record(status, metric("test"), done(phase, 0), dry_run=False).result("test")

    assert recorded is not None
    assert {key: getattr(recorded, key) for key in expected} == expected


def test_consecutive_successes_reset_on_anything_else() -> None:
    status = run_status()
    for phase in (P.SUCCESSFUL, P.SUCCESSFUL, P.ERROR, P.SUCCESSFUL):
        status = analysis.record(status, metric(), done(phase, 0), dry_run=False)

    recorded = status.result("m")
    assert recorded is not None
    assert (recorded.consecutive_success, recorded.successful, recorded.count) == (1, 3, 3)


@pytest.mark.parametrize(
    ("fields", "value", "phase"),
    [
        pytest.param({"successCondition": "result[0] >= 0.95"}, [0.97], P.SUCCESSFUL, id="success-holds"),
        pytest.param({"successCondition": "result[0] >= 0.95"}, [0.90], P.FAILED, id="success-fails-no-failure"),
        pytest.param({"failureCondition": "result >= 10"}, 3, P.SUCCESSFUL, id="failure-not-met-is-success"),
        pytest.param({"failureCondition": "result >= 10"}, 12, P.FAILED, id="failure-met"),
        pytest.param(
            {"successCondition": "result < 0.01", "failureCondition": "result > 0.05"},
            0.03,
            P.INCONCLUSIVE,
            id="neither-is-inconclusive",
        ),
        pytest.param(
            {"successCondition": "result < 0.01", "failureCondition": "result < 0.05"},
            0.001,
            P.FAILED,
            id="both-failure-wins",
        ),
        pytest.param({}, "anything", P.SUCCESSFUL, id="no-conditions-success"),
        pytest.param({"successCondition": "result.missing > 1"}, {}, P.ERROR, id="evaluation-error"),
    ],
)
def test_conditions_decide_the_measurement_phase(fields: dict[str, Any], value: object, phase: AnalysisPhase) -> None:
    assert analysis.condition_phase(metric(**fields), value)[0] is phase


def test_apply_result_records_value_and_error_messages() -> None:
    spec = AnalysisRunSpec(metrics=[metric(successCondition="result[0] >= 0.95", interval="1m")])
    status = analysis.apply_result(spec, run_status(), "m", Value(value=[0.97]), NOW)
    status = analysis.apply_result(spec, status, "m", Value(error="connection refused"), NOW)

    recorded = status.result("m")
    assert recorded is not None
    assert [(m.phase, m.value, m.message) for m in recorded.measurements] == [
        (P.SUCCESSFUL, "[0.97]", None),
        (P.ERROR, None, "connection refused"),
    ]


def test_apply_result_completes_an_in_flight_measurement() -> None:
    spec = AnalysisRunSpec(metrics=[metric()])
    status = analysis.apply_result(spec, run_status(), "m", Value(pending="job-1"), NOW - timedelta(seconds=30))
    pending = analysis.in_flight(status.result("m"))
    assert pending is not None and pending.metadata[analysis.PENDING_KEY] == "job-1"

    status = analysis.apply_result(spec, status, "m", Value(value=1), NOW)

    recorded = status.result("m")
    assert recorded is not None and len(recorded.measurements) == 1
    assert recorded.measurements[0].started_at == pending.started_at
    assert recorded.measurements[0].phase is P.SUCCESSFUL


# --- assessRunStatus -----------------------------------------------------------------------------------------


def test_run_running_while_any_metric_runs_then_worst() -> None:
    spec = AnalysisRunSpec(metrics=[metric("latency"), metric("successRate")])

    still = run_status(result("latency", P.SUCCESSFUL), result("successRate"))
    worst = run_status(result("latency", P.SUCCESSFUL), result("successRate", P.FAILED))

    assert analysis.assess_run(spec, still, NOW).phase is P.RUNNING
    assert analysis.assess_run(spec, worst, NOW).phase is P.FAILED


@pytest.mark.parametrize(
    ("phases", "worst"),
    [
        ((P.SUCCESSFUL, P.INCONCLUSIVE), P.INCONCLUSIVE),
        ((P.INCONCLUSIVE, P.ERROR), P.ERROR),
        ((P.ERROR, P.FAILED), P.FAILED),
        ((P.FAILED, P.SUCCESSFUL), P.FAILED),
    ],
)
def test_run_phase_is_the_worst_metric_in_argos_order(phases: tuple[AnalysisPhase, ...], worst: AnalysisPhase) -> None:
    spec = AnalysisRunSpec(metrics=[metric(f"m{i}") for i in range(len(phases))])
    status = run_status(*(result(f"m{i}", phase) for i, phase in enumerate(phases)))

    assert analysis.assess_run(spec, status, NOW).phase is worst


def test_run_update_result_flips_a_failed_metric_while_a_sibling_runs() -> None:
    spec = AnalysisRunSpec(metrics=[metric("sleepInfinity"), metric("failAfter30")])
    status = run_status(
        result("sleepInfinity", measurements=[running(60)]),
        result("failAfter30", count=1, failed=1, measurements=[done(P.FAILED)]),
    )

    assessed = analysis.assess_run(spec, status, NOW)

    assert [r.phase for r in assessed.metric_results] == [P.RUNNING, P.FAILED]
    assert assessed.phase is P.RUNNING
    # The next pass sees the failed metric: the run is terminating and completes with the worst phase
    # (TestReconcileAnalysisRunTerminateSiblingAfterFail).
    again = analysis.assess_run(spec, assessed, NOW)
    assert again.phase is P.FAILED
    assert again.message == 'Metric "failAfter30" assessed Failed due to failed (1) > failureLimit (0)'


def test_dry_run_metrics_never_fail_the_run() -> None:
    spec = AnalysisRunSpec.model_validate(
        {
            "metrics": [metric("real").wire(), metric("shadow").wire()],
            "dryRun": [{"metricName": "shadow"}],
        }
    )
    status = run_status(
        result("real", count=1, successful=1, measurements=[done(P.SUCCESSFUL)]),
        result("shadow", count=1, failed=1, dry_run=True, measurements=[done(P.FAILED)]),
    )

    assessed = analysis.assess_run(spec, status, NOW)

    assert assessed.phase is P.SUCCESSFUL
    assert assessed.run_summary is not None and assessed.run_summary.successful == 1
    assert assessed.dry_run_summary is not None and assessed.dry_run_summary.failed == 1
    shadow = assessed.result("shadow")
    assert shadow is not None and shadow.phase is P.FAILED
    assert shadow.message == "Metric assessed Failed due to failed (1) > failureLimit (0)"


def test_dry_run_regex_and_star_match_metric_names() -> None:
    spec = AnalysisRunSpec.model_validate(
        {"metrics": [metric("error-rate").wire(), metric("latency").wire()], "dryRun": [{"metricName": "err.*"}]}
    )
    every = spec.model_copy(update={"dry_run": [DryRun(metric_name="*")]})

    assert analysis.dry_run_metrics(spec) == {"error-rate"}
    assert analysis.dry_run_metrics(every) == {"error-rate", "latency"}


def test_terminate_completes_the_run_successfully_with_what_it_measured() -> None:
    spec = analysis.terminate(AnalysisRunSpec(metrics=[metric(interval="1m")]))
    status = run_status(result(count=2, successful=2, measurements=[done(P.SUCCESSFUL)]))

    assessed = analysis.assess_run(spec, status, NOW)

    assert (assessed.phase, assessed.message) == (P.SUCCESSFUL, "Run Terminated")
    assert assessed.completed_at == analysis.iso(NOW)


def test_an_invalid_spec_errors_the_run_naming_the_field() -> None:
    spec = AnalysisRunSpec(metrics=[metric(count=5, failureLimit=6, interval="1m")])

    assessed = analysis.assess_run(spec, AnalysisRunStatus(), NOW)

    assert assessed.phase is P.ERROR
    assert assessed.message == "Analysis spec invalid: metrics[0]: count 5 must be >= failureLimit 6"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"count": 3}, "interval must be set when count (3) > 1"),
        ({"failureLimit": -1}, "failureLimit -1 needs consecutiveSuccessLimit > 0"),
        ({"count": 2, "interval": "1m", "inconclusiveLimit": 3}, "count 2 must be >= inconclusiveLimit 3"),
        ({"count": 2, "interval": "1m", "consecutiveSuccessLimit": 3}, "count 2 must be >= consecutiveSuccessLimit 3"),
        ({"count": "{{args.n}}"}, 'metrics[0].count: "{{args.n}}" has an unresolved placeholder'),
        ({"successCondition": "result >="}, "metrics[0].successCondition: Syntax error"),
    ],
)
def test_run_validation_names_the_problem(fields: dict[str, Any], problem: str) -> None:
    message = analysis.validate_run(AnalysisRunSpec(metrics=[metric(**fields)]))

    assert message is not None and problem in message


def test_duplicate_metric_names_are_invalid() -> None:
    message = analysis.validate_run(AnalysisRunSpec(metrics=[metric("a"), metric("a")]))

    assert message == "metrics[1]: two metrics are named 'a'"


# --- measurement retention --------------------------------------------------------------------------------


def test_measurements_are_trimmed_to_the_newest_ten_by_default() -> None:
    spec = AnalysisRunSpec(metrics=[metric(interval="1s")])
    status = run_status()
    for index in range(13):
        status = analysis.record(status, spec.metrics[0], done(P.SUCCESSFUL, 13 - index, str(index)), dry_run=False)

    assessed = analysis.assess_run(spec, status, NOW)

    kept = assessed.result("m")
    assert kept is not None
    assert [m.value for m in kept.measurements] == [str(i) for i in range(3, 13)]
    assert kept.count == 13


def test_measurement_retention_overrides_the_default() -> None:
    spec = AnalysisRunSpec.model_validate(
        {"metrics": [metric(interval="1s").wire()], "measurementRetention": [{"metricName": "m", "limit": 2}]}
    )
    status = run_status()
    for index in range(5):
        status = analysis.record(status, spec.metrics[0], done(P.SUCCESSFUL, 5 - index, str(index)), dry_run=False)

    kept = analysis.assess_run(spec, status, NOW).result("m")

    assert kept is not None and [m.value for m in kept.measurements] == ["3", "4"]


# --- calculateNextReconcileTime --------------------------------------------------------------------------------


def test_next_time_is_the_interval_after_the_last_measurement() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate", interval="60s")])

    status = run_status(result("successRate", measurements=[done(P.SUCCESSFUL, 30)]))
    in_flight = run_status(result("successRate", measurements=[running(30)]))
    completed = run_status(result("successRate", P.SUCCESSFUL, measurements=[done(P.SUCCESSFUL, 120)]))

    assert analysis.next_measurement_time(spec, status) == NOW + timedelta(seconds=30)
    assert analysis.next_measurement_time(spec, in_flight) is None
    assert analysis.next_measurement_time(spec, completed) is None


def test_next_time_waits_for_an_initial_delay() -> None:
    spec = AnalysisRunSpec(
        metrics=[metric("successRate", interval="60s"), metric("startDelay", interval="60s", initialDelay="40s")]
    )
    status = run_status(result("successRate", measurements=[done(P.SUCCESSFUL, 30)]), started=30)

    assert analysis.next_measurement_time(spec, status) == NOW + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            run_status(
                result("a", measurements=[done(P.SUCCESSFUL, 30)]), result("b", measurements=[done(P.SUCCESSFUL, 50)])
            ),
            10,
            id="next-earliest-metric",
        ),
        pytest.param(run_status(result("a", measurements=[running(30, resume_in=10)])), 10, id="next-resume-at"),
        pytest.param(run_status(result("a", error=1, measurements=[done(P.ERROR, 0)])), 10, id="next-upon-error"),
    ],
)
def test_next_time_rows(status: AnalysisRunStatus, expected: float) -> None:
    names = [r.name for r in status.metric_results]
    spec = AnalysisRunSpec(metrics=[metric(name, interval="60s") for name in names])

    assert analysis.next_measurement_time(spec, status) == NOW + timedelta(seconds=expected)


def test_next_time_none_without_interval_once_measured() -> None:
    spec = AnalysisRunSpec(metrics=[metric("successRate", count=1)])
    status = run_status(result("successRate", P.SUCCESSFUL, count=1, measurements=[done(P.SUCCESSFUL, 0)]))

    assert analysis.next_measurement_time(spec, status) is None


# --- a whole run, replayed ---------------------------------------------------------------------------------


def replay(spec: AnalysisRunSpec, values: list[Value], *, step: float = 60) -> list[AnalysisPhase]:
    """Feed one value per due measurement, advancing time by `step`; the run phase after each."""
    status = AnalysisRunStatus(started_at=analysis.iso(NOW), phase=P.RUNNING)
    phases = []
    now = NOW
    feed = iter(values)
    while not status.phase.completed:
        for task in analysis.due(spec, status, now):
            status = analysis.apply_result(spec, status, task.metric.name, next(feed), now)
        status, next_time = analysis.assess(spec, status, now)
        phases.append(status.phase)
        if next_time is None:
            break
        now = max(next_time, now + timedelta(seconds=step))
    return phases


def test_replay_failure_limit_counts_failures_not_consecutive_ones() -> None:
    spec = AnalysisRunSpec(metrics=[metric(interval="5m", successCondition="result >= 0.95", failureLimit=2, count=6)])
    values = [Value(v) for v in (0.9, 0.99, 0.9, 0.99, 0.9, 0.99)]

    assert replay(spec, values, step=300) == [P.RUNNING, P.RUNNING, P.RUNNING, P.RUNNING, P.FAILED]


def test_replay_count_reached_is_successful() -> None:
    spec = AnalysisRunSpec(metrics=[metric(interval="60s", count=3, successCondition="result[0] >= 0.95")])

    assert replay(spec, [Value([0.99])] * 3) == [P.RUNNING, P.RUNNING, P.SUCCESSFUL]


def test_replay_consecutive_errors_error_the_run_after_the_limit() -> None:
    spec = AnalysisRunSpec(metrics=[metric(interval="60s", count=10, consecutiveErrorLimit=2)])

    phases = replay(spec, [Value(error="timeout")] * 3, step=10)

    assert phases[-1] is P.ERROR and len(phases) == 3


def test_a_failed_job_is_a_failed_measurement_not_an_error() -> None:
    from datetime import UTC, datetime

    from headway.core.analysis import measure
    from headway.providers.base import ProviderResult
    from headway.spec.analysis import AnalysisPhase, Metric

    metric = Metric.model_validate(
        {"name": "smoke", "provider": {"job": {"spec": {"template": {"spec": {"containers": []}}}}}}
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    failed = measure(metric, ProviderResult(error="exit 1", metadata={"phase": "Failed"}), now)
    broken = measure(metric, ProviderResult(error="could not start"), now)
    assert failed.phase is AnalysisPhase.FAILED
    assert broken.phase is AnalysisPhase.ERROR


# --- ours: the evidence a run in progress has for a promotion -------------------------------------------------


def _errored(message: str) -> Measurement:
    return Measurement(phase=P.ERROR, message=message, started_at=ago(5), finished_at=ago(5))


@pytest.mark.parametrize(
    ("phase", "results", "gap"),
    [
        (P.PENDING, [], "it has not started measuring"),
        (P.RUNNING, [], "metric 'a' has no measurement yet"),
        (P.RUNNING, [result("a", measurements=[running()])], "metric 'a' has no measurement yet"),
        (P.RUNNING, [result("a", measurements=[done(P.SUCCESSFUL)])], "metric 'b' has no measurement yet"),
        (
            P.RUNNING,
            [result("a", measurements=[done(P.SUCCESSFUL), _errored("timeout")]), result("b", measurements=[])],
            "metric 'a': its last measurement errored: timeout",
        ),
        (
            P.RUNNING,
            [result("a", measurements=[_errored("timeout"), running()]), result("b")],
            "metric 'a': its last measurement errored: timeout",
        ),
        (
            P.RUNNING,
            [result("a", measurements=[done(P.FAILED)]), result("b", measurements=[done(P.SUCCESSFUL)])],
            "",
        ),
        (P.ERROR, [], ""),
        (P.SUCCESSFUL, [], ""),
    ],
    ids=[
        "ours-gap-pending",
        "ours-gap-nothing-yet",
        "ours-gap-in-flight-only",
        "ours-gap-one-metric-missing",
        "ours-gap-error-streak",
        "ours-gap-error-then-retrying",
        "ours-gap-none-failures-within-limit",
        "ours-gap-completed-error",
        "ours-gap-completed-successful",
    ],
)
def test_the_evidence_gap_of_a_run(phase: AnalysisPhase, results: list[MetricResult], gap: str) -> None:
    spec = AnalysisRunSpec(metrics=[metric("a"), metric("b"), metric("quiet")], dry_run=[DryRun(metric_name="quiet")])
    status = AnalysisRunStatus(phase=phase, started_at=ago(60) if phase is not P.PENDING else None)
    status = status.model_copy(update={"metric_results": results})

    assert analysis.evidence_gap(spec, status) == gap
