"""Judge metrics on the analysis ladder: windows in, Fail/Pass/Hold out, and holds that never count as failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway.core import analysis, judge
from headway.spec.analysis import AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Metric

NOW = datetime(2026, 1, 1, tzinfo=UTC)
P = AnalysisPhase


def judge_metric(**fields: Any) -> Metric:
    return Metric.model_validate({"name": "errors", "provider": {"plugin": {analysis.JUDGE_PLUGIN: {}}}, **fields})


def Outcome(verdict: str) -> judge.JudgeResult:
    """A judge result with only the verdict set (the ladder reads the verdict and copies the rest)."""
    return judge.JudgeResult(
        verdict=judge.JudgeVerdict(verdict),
        e_value=1.0,
        p_value=1.0,
        ratio=None,
        lower=None,
        upper=None,
        canary_requests=0,
        canary_bad=0,
        stable_requests=0,
        stable_bad=0,
        explanation="because",
    )


def feed(spec: AnalysisRunSpec, verdicts: list[str]) -> tuple[AnalysisRunStatus, list[AnalysisPhase]]:
    status = AnalysisRunStatus(phase=P.RUNNING, started_at=analysis.iso(NOW))
    phases = []
    metric = spec.metrics[0]
    for index, verdict in enumerate(verdicts):
        now = NOW + timedelta(minutes=index)
        window = (100, 1, 900, 9)
        status = analysis.with_window(status, metric, window, dry_run=False)
        status = analysis.record(
            status, metric, analysis.judge_measurement(window, Outcome(verdict), now), dry_run=False
        )
        status = analysis.assess_run(spec, status, now)
        phases.append(status.phase)
        if status.phase.completed:
            break
    return status, phases


H, F, S = "Hold", "Fail", "Pass"


def test_holds_never_count_as_failures_and_the_first_pass_completes() -> None:
    spec = AnalysisRunSpec(metrics=[judge_metric(interval="1m")])

    status, phases = feed(spec, [H, H, H, H, H, H, S, H])

    assert phases == [P.RUNNING] * 6 + [P.SUCCESSFUL]
    result = status.result("errors")
    assert result is not None
    assert (result.count, result.failed, result.inconclusive, result.successful) == (7, 0, 0, 1)
    assert len(analysis.windows(result)) == 7


def test_the_first_fail_fails_the_metric() -> None:
    spec = AnalysisRunSpec(metrics=[judge_metric(interval="1m")])

    status, phases = feed(spec, [H, H, F])

    assert phases == [P.RUNNING, P.RUNNING, P.FAILED]
    assert (
        status.message
        == 'Metric "errors" assessed Failed due to failed (1) > failureLimit (0): "Error Message: because"'
    )


def test_with_a_count_the_judge_measures_on_and_holds_at_the_end_are_inconclusive() -> None:
    spec = AnalysisRunSpec(metrics=[judge_metric(interval="1m", count=3)])

    assert feed(spec, [S, H, H])[1] == [P.RUNNING, P.RUNNING, P.INCONCLUSIVE]
    assert feed(spec, [H, H, S])[1] == [P.RUNNING, P.RUNNING, P.SUCCESSFUL]


def test_a_judge_metric_without_an_interval_measures_every_minute() -> None:
    metric = judge_metric()

    assert analysis.limits(metric).interval == analysis.JUDGE_DEFAULT_INTERVAL
    assert analysis.limits(metric).count is None


def test_the_measurement_carries_the_window_and_the_judges_figures() -> None:
    judging = pytest.importorskip("headway.core.judge")
    history = [judging.Window(100, 10, 900, 9)] * 3
    outcome = judging.judge(history, judging.JudgeConfig())

    measurement = analysis.judge_measurement((100, 10, 900, 9), outcome, NOW)

    assert measurement.phase is P.FAILED
    assert measurement.value == '{"canaryRequests":100,"canaryBad":10,"stableRequests":900,"stableBad":9}'
    assert set(measurement.metadata) == {"pValue", "ratio", "lower", "upper", "explanation"}
    assert float(measurement.metadata["pValue"]) < 0.01
    assert measurement.message == outcome.explanation


def test_unknown_figures_read_as_empty() -> None:
    measurement = analysis.judge_measurement((0, 0, 0, 0), Outcome(H), NOW)

    assert measurement.phase is P.PENDING and analysis.is_hold(measurement)
    assert (measurement.metadata["ratio"], measurement.metadata["upper"]) == ("", "")


@pytest.mark.parametrize(
    ("value", "bad", "expected"),
    [
        ({"canaryRequests": 10, "canaryBad": 1, "stableRequests": 90, "stableBad": 2}, "errors", (10, 1, 90, 2)),
        ({"canaryRequests": 10.4, "canaryBad": 0.6, "stableRequests": 90, "stableBad": 0}, "errors", (10, 1, 90, 0)),
        (
            {"canary": {"requests": 50, "errors": 2, "slow": 5}, "stable": {"requests": 450, "errors": 3, "slow": 4}},
            "errors",
            (50, 2, 450, 3),
        ),
        (
            {"canary": {"requests": 50, "errors": 2, "slow": 5}, "stable": {"requests": 450, "errors": 3, "slow": 4}},
            "slow",
            (50, 5, 450, 4),
        ),
        ({"canaryRequests": 1, "canaryBad": 2, "stableRequests": 0, "stableBad": 0}, "errors", "more bad events"),
        ({"canaryRequests": -1, "canaryBad": 0, "stableRequests": 0, "stableBad": 0}, "errors", "canaryRequests"),
        ([1, 2, 3, 4], "errors", "must be a mapping"),
        ({"canary": {}, "stable": {}}, "latency", "badEvents must be one of errors, slow"),
    ],
)
def test_windows_are_read_from_counts_or_proxy_counters(value: object, bad: str, expected: object) -> None:
    parsed = analysis.parse_window(value, bad=bad)

    if isinstance(expected, str):
        assert isinstance(parsed, str) and expected in parsed
    else:
        assert parsed == expected


def with_judge(config: object) -> Metric:
    return Metric.model_validate({"name": "errors", "provider": {"plugin": {analysis.JUDGE_PLUGIN: config}}})


def test_the_judge_config_is_read_from_its_camel_case_settings_beside_the_source_block() -> None:
    config = {
        "source": "proxy",
        "proxy": {"window": "60s"},
        "badEvents": "slow",
        "alpha": 0.05,
        "margin": 1.2,
        "toleratedRatio": 1.1,
        "minCanaryRequests": 50,
    }
    assert analysis.judge_config(with_judge(config)) == judge.JudgeConfig(
        alpha=0.05, margin=1.2, tolerated_ratio=1.1, min_canary_requests=50
    )
    assert analysis.validate_run(AnalysisRunSpec(metrics=[with_judge(config)])) is None


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        pytest.param(
            {"tolerated_ratio": 1.1},
            "metrics[0].provider.plugin['headway.dev/judge'].tolerated_ratio: not a judge setting (known: source, "
            "badEvents, alpha, margin, toleratedRatio, minCanaryRequests, and the source's block); "
            "did you mean 'toleratedRatio'?",
            id="snake-case",
        ),
        pytest.param(
            {"source": "proxy", "prometheus": {}},
            "metrics[0].provider.plugin['headway.dev/judge'].prometheus: not a judge setting",
            id="another-provider's-block",
        ),
        pytest.param(
            {"alpha": 2}, "metrics[0].provider.plugin['headway.dev/judge']: JudgeConfig.alpha", id="bad-value"
        ),
        pytest.param([1], "metrics[0].provider.plugin['headway.dev/judge'] must be a mapping", id="not-a-mapping"),
    ],
)
def test_a_judge_config_the_judge_cannot_use_makes_the_run_invalid_naming_the_key(config: object, problem: str) -> None:
    """A misspelt setting used to be ignored: the judge then ran on its default, laxer than what was asked."""
    found = analysis.validate_run(AnalysisRunSpec(metrics=[with_judge(config)]))
    assert found is not None and found.startswith(problem), found
