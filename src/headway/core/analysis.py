"""The AnalysisRun ladder: measurement → metric verdict → run verdict, and when to measure next.

Pure functions over the AnalysisRun models of `headway.spec.analysis`, following Argo Rollouts'
``analysis/analysis.go`` step by step (``generateMetricTasks`` → `due`, ``runMeasurements`` → `record`,
``assessMetricStatus`` → `assess_metric`, ``assessRunStatus`` → `assess_run`, ``calculateNextReconcileTime`` →
`next_measurement_time`, ``garbageCollectMeasurements`` → retention in `assess_run`). Measurements arrive as inputs
(`apply_result` turns a provider's value or error into one), and time is an argument, so a whole run can be
replayed in a test without a clock or a provider.

Differences from Argo, on purpose:
- a metric with neither condition is Successful unless its measurement errored (Argo's current code; older docs
  said Inconclusive);
- `terminating` looks at every non-dry-run metric (Argo returns on the first unsuccessful one, dry-run or not);
- judge metrics (``provider.plugin["headway.dev/judge"]``) may *hold*: a measurement recorded with phase Pending,
  counted toward ``count`` but never toward failures, successes or inconclusives. Without a ``count`` a judge
  metric measures until its first Pass (Successful) or Fail (Failed); when a ``count`` runs out on a hold, the
  metric is Inconclusive (no evidence either way, so a human decides).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from headway.core import conditions, judge
from headway.spec.analysis import (
    AnalysisPhase,
    AnalysisRunSpec,
    AnalysisRunStatus,
    Measurement,
    Metric,
    MetricResult,
    RunSummary,
    resolve_int,
)
from headway.spec.base import parse_duration

DEFAULT_MEASUREMENT_HISTORY_LIMIT = 10
"""Measurements kept per metric unless measurementRetention says otherwise (Argo's default)."""
DEFAULT_ERROR_RETRY_INTERVAL = 10.0
"""Seconds before measuring again after an Error, whatever the interval (Argo's default)."""
PENDING_POLL_INTERVAL = 5.0
"""Seconds between polls of an in-flight measurement whose provider gave no better time."""
JUDGE_PLUGIN = "headway.dev/judge"
"""The plugin key that declares a judge metric (an Argo plugin provider, so Argo manifests stay valid)."""
JUDGE_SETTINGS: Mapping[str, str] = {
    "alpha": "alpha",
    "margin": "margin",
    "toleratedRatio": "tolerated_ratio",
    "minCanaryRequests": "min_canary_requests",
}
"""The judge's settings as a metric writes them (camelCase, like every manifest field) → `judge.JudgeConfig`'s."""
JUDGE_KEYS = ("source", "badEvents", *JUDGE_SETTINGS)
"""Every key the judge's plugin block may hold, besides the block of the provider its ``source`` names."""
JUDGE_DEFAULT_INTERVAL = 60.0
"""Seconds between judge windows when the metric sets no interval."""
HOLD = "Hold"
VERDICT_KEY = "verdict"
PENDING_KEY = "headway.dev/pending"
WINDOWS_KEY = "headway.dev/windows"
TERMINATED = "Metric Terminated"

_ORDER = (
    AnalysisPhase.PENDING,
    AnalysisPhase.RUNNING,
    AnalysisPhase.SUCCESSFUL,
    AnalysisPhase.INCONCLUSIVE,
    AnalysisPhase.ERROR,
    AnalysisPhase.FAILED,
)
"""Argo's ``analysisStatusOrder``: a later phase is worse."""


def is_worse(current: AnalysisPhase, new: AnalysisPhase) -> bool:
    """Whether ``new`` is a worse verdict than ``current`` (Argo's ``IsWorse``)."""
    return _ORDER.index(new) > _ORDER.index(current)


def is_judge(metric: Metric) -> bool:
    """A metric whose measurements are judged by `headway.core.judge` instead of by conditions."""
    plugin = metric.provider.plugin
    return plugin is not None and JUDGE_PLUGIN in plugin


def judge_config(metric: Metric) -> judge.JudgeConfig | str:
    """The `judge.JudgeConfig` of a judge metric's ``provider.plugin["headway.dev/judge"]``, or what is wrong with
    it, naming the key. A key the judge does not know is refused, never left at its default: a ``tolerated_ratio``
    written as the Python attribute is spelt, silently ignored, would judge by a laxer ratio than asked for."""
    where = f"provider.plugin[{JUDGE_PLUGIN!r}]"
    raw = (metric.provider.plugin or {}).get(JUDGE_PLUGIN) or {}
    if not isinstance(raw, Mapping):
        return f"{where} must be a mapping"
    source = raw.get("source")
    for key in raw:
        if key not in JUDGE_KEYS and key != source:
            close = difflib.get_close_matches(str(key), JUDGE_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"{where}.{key}: not a judge setting (known: {', '.join(JUDGE_KEYS)}, and the source's block){hint}"
    settings = {attribute: raw[wire] for wire, attribute in JUDGE_SETTINGS.items() if wire in raw}
    try:
        return judge.JudgeConfig(**settings)
    except (TypeError, ValueError) as error:
        return f"{where}: {error}"


def is_hold(measurement: Measurement) -> bool:
    """A judge measurement that decided nothing yet: it neither succeeds nor fails."""
    return measurement.metadata.get(VERDICT_KEY) == HOLD and measurement.finished_at is not None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- limits ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """A metric's numbers, with Argo's defaults applied and placeholders already resolved."""

    count: int | None
    """The number of measurements to take; None measures until stopped (or, for a judge, until it decides)."""
    interval: float | None
    initial_delay: float | None
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    consecutive_success_limit: int


def limits(metric: Metric) -> Limits:
    """Argo's ``EffectiveCount`` and limits. Raises ValueError naming the field when a number is not usable."""

    def number(field: str, value: int | str) -> int:
        try:
            return resolve_int(value)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None

    def seconds(field: str, value: int | str | None) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None

    count = number("count", metric.count) if metric.count is not None else 0
    interval = seconds("interval", metric.interval)
    judged = is_judge(metric)
    if judged and interval is None:
        interval = JUDGE_DEFAULT_INTERVAL
    effective: int | None = count if count > 0 else (None if interval is not None else 1)
    if judged and count <= 0:
        effective = None
    return Limits(
        count=effective,
        interval=interval,
        initial_delay=seconds("initialDelay", metric.initial_delay),
        failure_limit=number("failureLimit", metric.failure_limit),
        inconclusive_limit=number("inconclusiveLimit", metric.inconclusive_limit),
        consecutive_error_limit=number("consecutiveErrorLimit", metric.consecutive_error_limit),
        consecutive_success_limit=number("consecutiveSuccessLimit", metric.consecutive_success_limit),
    )


def validate_run(spec: AnalysisRunSpec) -> str | None:
    """Argo's ``ValidateMetrics`` plus our conditions: None, or the first problem, naming the field."""
    seen: set[str] = set()
    for index, metric in enumerate(spec.metrics):
        where = f"metrics[{index}]"
        if metric.name in seen:
            return f"{where}: two metrics are named {metric.name!r}"
        seen.add(metric.name)
        try:
            limit = limits(metric)
        except ValueError as error:
            return f"{where}.{error}"
        problem = _check_limits(limit, metric)
        if problem is not None:
            return f"{where}: {problem}"
        config = judge_config(metric) if is_judge(metric) else None
        if isinstance(config, str):
            return f"{where}.{config}"
        for field, text in (
            ("successCondition", metric.success_condition),
            ("failureCondition", metric.failure_condition),
        ):
            if text is not None and not is_judge(metric):
                compiled = conditions.compile_condition(text)
                if isinstance(compiled, conditions.CompileError):
                    return f"{where}.{field}: {compiled.describe()}"
    for field, patterns in (
        ("dryRun", [d.metric_name for d in spec.dry_run]),
        ("measurementRetention", [m.metric_name for m in spec.measurement_retention]),
    ):
        for index, pattern in enumerate(patterns):
            if not any(_matches(pattern, metric.name) for metric in spec.metrics):
                return f"{field}[{index}]: metric {pattern!r} matches no metric of the run"
    return None


def _check_limits(limit: Limits, metric: Metric) -> str | None:
    if limit.failure_limit < 0 and limit.failure_limit != -1:
        return f"failureLimit {limit.failure_limit} must be -1 (disabled) or >= 0"
    if limit.failure_limit == -1 and limit.consecutive_success_limit <= 0:
        return "failureLimit -1 needs consecutiveSuccessLimit > 0 (otherwise nothing can decide the metric)"
    if metric.count is not None and limit.count is not None:
        if limit.count < limit.failure_limit:
            return f"count {limit.count} must be >= failureLimit {limit.failure_limit}"
        if limit.count < limit.inconclusive_limit:
            return f"count {limit.count} must be >= inconclusiveLimit {limit.inconclusive_limit}"
        if limit.count < limit.consecutive_success_limit:
            return f"count {limit.count} must be >= consecutiveSuccessLimit {limit.consecutive_success_limit}"
        if limit.count > 1 and metric.interval is None and not is_judge(metric):
            return f"interval must be set when count ({limit.count}) > 1"
    return None


def _matches(pattern: str, name: str) -> bool:
    """Argo matches dryRun and measurementRetention names as regular expressions; ``*`` means every metric."""
    if pattern in ("*", name):
        return True
    try:
        return re.search(pattern[:256], name) is not None
    except re.error:
        return False


def dry_run_metrics(spec: AnalysisRunSpec) -> frozenset[str]:
    return frozenset(m.name for m in spec.metrics if any(_matches(d.metric_name, m.name) for d in spec.dry_run))


def retention_limit(spec: AnalysisRunSpec, metric: str) -> int:
    for retention in spec.measurement_retention:
        if _matches(retention.metric_name, metric) and retention.limit > 0:
            return retention.limit
    return DEFAULT_MEASUREMENT_HISTORY_LIMIT


# --- measurements ---------------------------------------------------------------------------------------


class ResultLike(Protocol):
    """What a provider returns (`headway.providers.base.ProviderResult` fits): a value, an error or a handle."""

    @property
    def value(self) -> Any: ...

    @property
    def error(self) -> str | None: ...

    @property
    def pending(self) -> str | None: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...


def condition_phase(metric: Metric, value: object) -> tuple[AnalysisPhase, str | None]:
    """Argo's ``EvaluateResult``: the measurement phase from successCondition/failureCondition."""
    success: bool | None = None
    failure: bool | None = None
    for text, which in ((metric.success_condition, "successCondition"), (metric.failure_condition, "failureCondition")):
        if text is None:
            continue
        compiled = conditions.compile_condition(text)
        if isinstance(compiled, conditions.CompileError):
            return AnalysisPhase.ERROR, f"{which}: {compiled.describe()}"
        held = conditions.evaluate(compiled, value)
        if isinstance(held, conditions.EvaluationError):
            return AnalysisPhase.ERROR, f"{which} {text!r}: {held.message}"
        if which == "successCondition":
            success = held
        else:
            failure = held
    if success is None and failure is None:
        return AnalysisPhase.SUCCESSFUL, None
    if failure is None:
        failure = not success
    if success is None:
        success = not failure
    if failure:
        return AnalysisPhase.FAILED, None
    if not success:
        return AnalysisPhase.INCONCLUSIVE, None
    return AnalysisPhase.SUCCESSFUL, None


def render_value(value: object) -> str:
    """A measurement value as status stores it: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)


def measure(
    metric: Metric, result: ResultLike, now: datetime, *, started_at: str | None = None, poll: float | None = None
) -> Measurement:
    """The measurement a provider's result makes: in flight, Error with the message, or judged by conditions."""
    started = started_at or iso(now)
    metadata = dict(result.metadata)
    if result.pending is not None:
        metadata[PENDING_KEY] = result.pending
        resume = now + timedelta(seconds=poll if poll is not None else PENDING_POLL_INTERVAL)
        return Measurement(phase=AnalysisPhase.RUNNING, started_at=started, metadata=metadata, resume_at=iso(resume))
    if result.error is not None:
        # A provider that ran its check and saw it fail (a Job that failed) reports a verdict, not a broken query:
        # Argo counts it against failureLimit, not consecutiveErrorLimit.
        phase = AnalysisPhase.FAILED if metadata.get("phase") == AnalysisPhase.FAILED.value else AnalysisPhase.ERROR
        return Measurement(
            phase=phase, message=result.error, started_at=started, finished_at=iso(now), metadata=metadata
        )
    phase, message = condition_phase(metric, result.value)
    return Measurement(
        phase=phase,
        message=message,
        started_at=started,
        finished_at=iso(now),
        value=render_value(result.value),
        metadata=metadata,
    )


def in_flight(result: MetricResult | None) -> Measurement | None:
    """The last measurement if it is still running (started, not finished)."""
    if result is None or not result.measurements:
        return None
    last = result.measurements[-1]
    return last if last.finished_at is None else None


def record(status: AnalysisRunStatus, metric: Metric, measurement: Measurement, *, dry_run: bool) -> AnalysisRunStatus:
    """Add (or, for an in-flight one, replace) a measurement and update the metric's counters like Argo."""
    current = status.result(metric.name) or MetricResult(name=metric.name, phase=AnalysisPhase.RUNNING, dry_run=dry_run)
    counters: dict[str, Any] = {}
    if measurement.finished_at is not None:
        counters = _count(current, measurement)
    measurements = list(current.measurements)
    if in_flight(current) is not None:
        measurements[-1] = measurement
    else:
        measurements.append(measurement)
    updated = current.model_copy(update={"measurements": measurements, **counters})
    return _set_result(status, updated)


def _count(result: MetricResult, measurement: Measurement) -> dict[str, Any]:
    phase = measurement.phase
    if is_hold(measurement):
        return {"count": result.count + 1, "consecutive_error": 0, "consecutive_success": 0}
    if phase is AnalysisPhase.ERROR:
        return {"error": result.error + 1, "consecutive_error": result.consecutive_error + 1, "consecutive_success": 0}
    if phase is AnalysisPhase.SUCCESSFUL:
        return {
            "successful": result.successful + 1,
            "count": result.count + 1,
            "consecutive_error": 0,
            "consecutive_success": result.consecutive_success + 1,
        }
    if phase is AnalysisPhase.FAILED:
        return {
            "failed": result.failed + 1,
            "count": result.count + 1,
            "consecutive_error": 0,
            "consecutive_success": 0,
        }
    if phase is AnalysisPhase.INCONCLUSIVE:
        return {
            "inconclusive": result.inconclusive + 1,
            "count": result.count + 1,
            "consecutive_error": 0,
            "consecutive_success": 0,
        }
    return {}


def _set_result(status: AnalysisRunStatus, result: MetricResult) -> AnalysisRunStatus:
    results = [r for r in status.metric_results if r.name != result.name]
    index = next((i for i, r in enumerate(status.metric_results) if r.name == result.name), len(results))
    results.insert(index, result)
    return status.model_copy(update={"metric_results": results})


def apply_result(
    spec: AnalysisRunSpec, status: AnalysisRunStatus, metric: str, result: ResultLike, now: datetime
) -> AnalysisRunStatus:
    """Record a provider's result for ``metric`` (completing its in-flight measurement, if any)."""
    chosen = next((m for m in spec.metrics if m.name == metric), None)
    if chosen is None:
        raise KeyError(f"the run has no metric {metric!r}")
    pending = in_flight(status.result(metric))
    started = pending.started_at if pending is not None else None
    return record(
        status, chosen, measure(chosen, result, now, started_at=started), dry_run=metric in dry_run_metrics(spec)
    )


# --- what to measure now ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A metric to measure this pass: start a new measurement, poll ``pending``, or cancel it (terminating)."""

    metric: Metric
    pending: Measurement | None = None
    cancel: bool = False

    @property
    def handle(self) -> str | None:
        return self.pending.metadata.get(PENDING_KEY) if self.pending is not None else None


def terminating(spec: AnalysisRunSpec, status: AnalysisRunStatus) -> bool:
    """Stopped by request, or a non-dry-run metric already ended unsuccessfully (Argo's ``IsTerminating``)."""
    if spec.terminate:
        return True
    return any(r.phase.unsuccessful and not r.dry_run for r in status.metric_results)


def due(spec: AnalysisRunSpec, status: AnalysisRunStatus, now: datetime) -> list[Due]:
    """Argo's ``generateMetricTasks``: the metrics to measure (or resume, or cancel) at ``now``."""
    if status.phase.completed or validate_run(spec) is not None:
        return []
    stopping = terminating(spec, status)
    started = parse_time(status.started_at) if status.started_at else now
    tasks: list[Due] = []
    for metric in spec.metrics:
        result = status.result(metric.name)
        if result is not None and result.phase.completed:
            continue
        pending = in_flight(result)
        if pending is not None:
            if stopping:
                tasks.append(Due(metric, pending, cancel=True))
            elif pending.resume_at is None or parse_time(pending.resume_at) <= now:
                tasks.append(Due(metric, pending))
            continue
        if stopping:
            continue
        when = _next_time(metric, result, started)
        if when is not None and when <= now:
            tasks.append(Due(metric))
    return tasks


def _next_time(metric: Metric, result: MetricResult | None, started: datetime) -> datetime | None:
    """When ``metric`` should next be measured (None: never again), ignoring in-flight measurements."""
    limit = limits(metric)
    if result is None or not result.measurements:
        return started + timedelta(seconds=limit.initial_delay or 0.0)
    if limit.count is not None and result.count >= limit.count:
        return None
    last = result.measurements[-1]
    if last.finished_at is None:
        return parse_time(last.resume_at) if last.resume_at else None
    finished = parse_time(last.finished_at)
    if last.phase is AnalysisPhase.ERROR:
        return finished + timedelta(seconds=DEFAULT_ERROR_RETRY_INTERVAL)
    if limit.interval is None:
        return None
    return finished + timedelta(seconds=limit.interval)


def next_measurement_time(spec: AnalysisRunSpec, status: AnalysisRunStatus) -> datetime | None:
    """Argo's ``calculateNextReconcileTime``: the earliest time any unfinished metric needs attention."""
    if status.phase.completed or validate_run(spec) is not None:
        return None
    started = parse_time(status.started_at) if status.started_at else None
    times: list[datetime] = []
    for metric in spec.metrics:
        result = status.result(metric.name)
        if result is not None and result.phase.completed:
            continue
        if started is None:
            return None
        when = _next_time(metric, result, started)
        if when is not None:
            times.append(when)
    return min(times, default=None)


# --- verdicts ---------------------------------------------------------------------------------------------


def evidence_gap(spec: AnalysisRunSpec, status: AnalysisRunStatus) -> str:
    """Why a run in progress has no sound evidence yet, or "" when it has: every metric that decides (not dry-run)
    has a finished measurement and none's latest one is an Error.

    Argo's rollout promotes over a background run whatever it is doing; the rollout asks this instead, so a run
    that never measured (an ``initialDelay`` longer than the steps) or is in an error streak not yet at its
    ``consecutiveErrorLimit`` is no reason to promote. Completed runs have their verdict: no gap."""
    if status.phase.completed:
        return ""
    if status.phase is AnalysisPhase.PENDING or status.started_at is None:
        return "it has not started measuring"
    dry = dry_run_metrics(spec)
    for metric in spec.metrics:
        if metric.name in dry:
            continue
        result = status.result(metric.name)
        finished = [m for m in (result.measurements if result is not None else []) if m.finished_at is not None]
        if not finished:
            return f"metric {metric.name!r} has no measurement yet"
        last = finished[-1]
        if last.phase is AnalysisPhase.ERROR:
            detail = f": {last.message}" if last.message else ""
            return f"metric {metric.name!r}: its last measurement errored{detail}"
    return ""


def failure_inconclusive_or_error(metric: Metric, result: MetricResult) -> tuple[AnalysisPhase | None, str]:
    """Argo's ``assessMetricFailureInconclusiveOrError``: which limit, if any, the counters crossed."""
    limit = limits(metric)
    phase: AnalysisPhase | None = None
    message = ""
    if limit.failure_limit >= 0 and result.failed > limit.failure_limit:
        phase, message = AnalysisPhase.FAILED, f"failed ({result.failed}) > failureLimit ({limit.failure_limit})"
    if result.inconclusive > limit.inconclusive_limit:
        phase = AnalysisPhase.INCONCLUSIVE
        message = f"inconclusive ({result.inconclusive}) > inconclusiveLimit ({limit.inconclusive_limit})"
    if result.consecutive_error > limit.consecutive_error_limit:
        phase = AnalysisPhase.ERROR
        message = (
            f"consecutiveErrors ({result.consecutive_error}) > consecutiveErrorLimit ({limit.consecutive_error_limit})"
        )
    return phase, message


def assess_metric(metric: Metric, result: MetricResult, *, terminating: bool) -> AnalysisPhase:
    """Argo's ``assessMetricStatus``: the metric's phase from its counters, limits and the run's state."""
    if result.phase.completed:
        return result.phase
    if not result.measurements:
        return AnalysisPhase.SUCCESSFUL if terminating else AnalysisPhase.PENDING
    last = result.measurements[-1]
    if last.finished_at is None:
        return AnalysisPhase.RUNNING
    phase, _ = failure_inconclusive_or_error(metric, result)
    if phase is not None:
        return phase
    limit = limits(metric)
    if limit.consecutive_success_limit > 0 and result.consecutive_success >= limit.consecutive_success_limit:
        return AnalysisPhase.SUCCESSFUL
    if is_judge(metric) and limit.count is None and last.phase is AnalysisPhase.SUCCESSFUL:
        return AnalysisPhase.SUCCESSFUL
    if limit.count is not None and result.count >= limit.count:
        if is_hold(last):
            return AnalysisPhase.INCONCLUSIVE
        failure_applies = limit.failure_limit >= 0
        success_applies = limit.consecutive_success_limit > 0
        if success_applies and failure_applies:
            return AnalysisPhase.INCONCLUSIVE
        if success_applies:
            return AnalysisPhase.FAILED
        return AnalysisPhase.SUCCESSFUL
    return AnalysisPhase.SUCCESSFUL if terminating else AnalysisPhase.RUNNING


def _limit_message(metric: Metric, result: MetricResult, phase: AnalysisPhase) -> str:
    """Why a metric ended unsuccessfully when no counter explains it (count or consecutive successes ran out)."""
    _, message = failure_inconclusive_or_error(metric, result)
    if message:
        return message
    if phase is AnalysisPhase.INCONCLUSIVE and result.measurements and is_hold(result.measurements[-1]):
        return f"count ({result.count}) reached while the judge still held"
    limit = limits(metric)
    if limit.consecutive_success_limit > 0 and phase is not AnalysisPhase.SUCCESSFUL:
        return (
            f"count ({result.count}) reached before consecutiveSuccessLimit ({limit.consecutive_success_limit}): "
            f"{result.consecutive_success} consecutive successes"
        )
    return ""


def assess_run(spec: AnalysisRunSpec, status: AnalysisRunStatus, now: datetime) -> AnalysisRunStatus:
    """Argo's ``assessRunStatus`` plus measurement retention: metric phases, the run phase, summaries, message."""
    if status.phase.completed:
        return status
    invalid = validate_run(spec)
    if invalid is not None:
        return status.model_copy(
            update={
                "phase": AnalysisPhase.ERROR,
                "message": f"Analysis spec invalid: {invalid}",
                "started_at": status.started_at or iso(now),
                "completed_at": iso(now),
            }
        )
    stopping = terminating(spec, status)
    dry = dry_run_metrics(spec)
    run, dry_summary = _Summary(), _Summary()
    worst: AnalysisPhase | None = None
    worst_message = "Run Terminated" if spec.terminate else ""
    everything_completed = True
    for metric in spec.metrics:
        summary = dry_summary if metric.name in dry else run
        summary.count += 1
        result = status.result(metric.name)
        if result is None:
            everything_completed = False
            continue
        phase = assess_metric(metric, result, terminating=stopping)
        if phase != result.phase:
            last = result.measurements[-1] if result.measurements else None
            result = result.model_copy(update={"phase": phase, "message": last.message if last else result.message})
        if not phase.completed:
            everything_completed = False
        else:
            reason = _limit_message(metric, result, phase) if phase.unsuccessful else ""
            summary.add(phase)
            if metric.name in dry:
                worst = worst or AnalysisPhase.SUCCESSFUL
                if reason:
                    result = result.model_copy(update={"message": f"Metric assessed {phase.value} due to {reason}"})
            elif worst is None or is_worse(worst, phase):
                worst = phase
                if reason:
                    worst_message = f'Metric "{metric.name}" assessed {phase.value} due to {reason}'
                    if result.message:
                        worst_message += f': "Error Message: {result.message}"'
        result = _retain(spec, result)
        status = _set_result(status, result)
    if stopping:
        final: AnalysisPhase = worst or AnalysisPhase.SUCCESSFUL
    elif not everything_completed or worst is None:
        final = AnalysisPhase.RUNNING
    else:
        final = worst
    update: dict[str, Any] = {
        "phase": final,
        "started_at": status.started_at or iso(now),
        "run_summary": run.model(),
        "dry_run_summary": dry_summary.model(),
    }
    if final.completed:
        update["message"] = worst_message.strip() or None
        update["completed_at"] = iso(now)
    return status.model_copy(update=update)


def _retain(spec: AnalysisRunSpec, result: MetricResult) -> MetricResult:
    keep = retention_limit(spec, result.name)
    if len(result.measurements) <= keep:
        return result
    return result.model_copy(update={"measurements": result.measurements[-keep:]})


@dataclass
class _Summary:
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0

    def add(self, phase: AnalysisPhase) -> None:
        if phase is AnalysisPhase.FAILED:
            self.failed += 1
        elif phase is AnalysisPhase.INCONCLUSIVE:
            self.inconclusive += 1
        elif phase is AnalysisPhase.ERROR:
            self.error += 1
        else:
            self.successful += 1

    def model(self) -> RunSummary:
        return RunSummary(
            count=self.count,
            successful=self.successful,
            failed=self.failed,
            inconclusive=self.inconclusive,
            error=self.error,
        )


def assess(
    spec: AnalysisRunSpec, status: AnalysisRunStatus, now: datetime
) -> tuple[AnalysisRunStatus, datetime | None]:
    """Assess the run at ``now``; return the new status and when to measure next (None: nothing to wait for)."""
    assessed = assess_run(spec, status, now)
    return assessed, next_measurement_time(spec, assessed)


def terminate(spec: AnalysisRunSpec) -> AnalysisRunSpec:
    """Ask the run to stop: in-flight measurements are cancelled, nothing new starts, and it completes."""
    return spec if spec.terminate else spec.model_copy(update={"terminate": True})


# --- judge metrics ------------------------------------------------------------------------------------------


WINDOW_FIELDS = ("canaryRequests", "canaryBad", "stableRequests", "stableBad")


BAD_EVENTS = ("errors", "slow")
"""What a proxy-counter window may count as bad: failed requests, or requests slower than the latency cut."""


def parse_window(value: object, *, bad: str = "errors") -> tuple[int, int, int, int] | str:
    """The four counts of a judge window from a provider value, or why not.

    Two shapes are read: a mapping with `WINDOW_FIELDS` (counts as the judge wants them), or the embedded
    proxy's counters (``{"canary": {"requests", "errors", "slow"}, "stable": {...}}``), where ``bad`` picks the
    counter that holds the bad events.
    """
    if (
        isinstance(value, Mapping)
        and isinstance(value.get("canary"), Mapping)
        and isinstance(value.get("stable"), Mapping)
    ):
        if bad not in BAD_EVENTS:
            return f"badEvents must be one of {', '.join(BAD_EVENTS)}; got {bad!r}"
        canary, stable = value["canary"], value["stable"]
        value = {
            "canaryRequests": canary.get("requests"),
            "canaryBad": canary.get(bad),
            "stableRequests": stable.get("requests"),
            "stableBad": stable.get(bad),
        }
    if not isinstance(value, Mapping):
        return f"a judge window must be a mapping with {', '.join(WINDOW_FIELDS)}; got {type(value).__name__}"
    counts: list[int] = []
    for name in WINDOW_FIELDS:
        raw = value.get(name)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
            return f"judge window field {name} must be a count >= 0; got {raw!r}"
        counts.append(round(raw))
    canary_requests, canary_bad, stable_requests, stable_bad = counts
    if canary_bad > canary_requests or stable_bad > stable_requests:
        return "a judge window has more bad events than requests"
    return canary_requests, canary_bad, stable_requests, stable_bad


def windows(result: MetricResult | None) -> list[tuple[int, int, int, int]]:
    """Every window a judge metric has seen (kept in the result's metadata: measurements may be trimmed)."""
    if result is None or WINDOWS_KEY not in result.metadata:
        return []
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in json.loads(result.metadata[WINDOWS_KEY])]


def with_window(
    status: AnalysisRunStatus, metric: Metric, window: tuple[int, int, int, int], *, dry_run: bool
) -> AnalysisRunStatus:
    """Append a window to the judge metric's history before judging it."""
    current = status.result(metric.name) or MetricResult(name=metric.name, phase=AnalysisPhase.RUNNING, dry_run=dry_run)
    history = [*windows(current), window]
    metadata = {**current.metadata, WINDOWS_KEY: json.dumps(history, separators=(",", ":"))}
    return _set_result(status, current.model_copy(update={"metadata": metadata}))


def judge_measurement(
    window: tuple[int, int, int, int], outcome: judge.JudgeResult, now: datetime, *, started_at: str | None = None
) -> Measurement:
    """The measurement of a judge window: Fail → Failed, Pass → Successful, Hold → recorded, deciding nothing."""
    verdict = str(getattr(outcome.verdict, "value", outcome.verdict)).lower()
    metadata = {
        "pValue": _number(outcome.p_value),
        "ratio": _number(outcome.ratio),
        "lower": _number(outcome.lower),
        "upper": _number(outcome.upper),
        "explanation": outcome.explanation,
    }
    if verdict == "fail":
        phase = AnalysisPhase.FAILED
    elif verdict == "pass":
        phase = AnalysisPhase.SUCCESSFUL
    else:
        phase = AnalysisPhase.PENDING
        metadata[VERDICT_KEY] = HOLD
    return Measurement(
        phase=phase,
        message=outcome.explanation,
        started_at=started_at or iso(now),
        finished_at=iso(now),
        value=json.dumps(dict(zip(WINDOW_FIELDS, window, strict=True)), separators=(",", ":")),
        metadata=metadata,
    )


def _number(value: float | None) -> str:
    """A judge figure as status text; None (not known yet, or unbounded) reads as an empty string."""
    return "" if value is None else f"{value:.6g}"


def summarise_judge(status: AnalysisRunStatus, metric: str, measurement: Measurement) -> AnalysisRunStatus:
    """Copy the judge's latest p-value, ratio, bounds and explanation onto the metric result (status readers)."""
    current = status.result(metric)
    if current is None:
        return status
    latest = {key: measurement.metadata[key] for key in ("pValue", "ratio", "lower", "upper", "explanation")}
    return _set_result(status, current.model_copy(update={"metadata": {**current.metadata, **latest}}))
