"""An analysis run for humans: its measurements to chart and, for a judge metric, the judge's evidence.

Both modes keep a run in the same shape (`headway.spec.analysis.AnalysisRun`: the embedded runner in SQLite, the
Kubernetes controller as an AnalysisRun object whose ``status.metricResults[].measurements`` it writes), so one
function turns either into an `AnalysisRunView`. The judge's latest p-value, ratio and bounds are copied by the
executor into the metric result's metadata; each window's ratio and bounds are on its measurement.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from headway.core.analysis import JUDGE_PLUGIN
from headway.dashboard.model import AnalysisRunView, JudgeEvidence, JudgePoint, MeasurementView
from headway.spec.analysis import AnalysisRunStatus, Measurement, MetricResult
from headway.spec.rollout import POD_TEMPLATE_HASH_LABEL

MEASUREMENTS = 120
"""Measurements per run sent to the page (the newest); enough for a chart, small enough to refetch often."""
JUDGE_KEYS = ("pValue", "ratio", "lower", "upper", "explanation")
HASH_LABEL = POD_TEMPLATE_HASH_LABEL
"""Argo's label naming a revision: on a ReplicaSet, its pods, and an Experiment or run of that revision."""


def run_view(
    name: str,
    phase: str,
    message: str,
    status: AnalysisRunStatus | None,
    *,
    kind: str = "",
    revision: str | None = None,
    tolerated: dict[str, float] | None = None,
) -> AnalysisRunView:
    """The run's view; ``tolerated`` maps a judge metric's name to its tolerated ratio (default 1)."""
    view = AnalysisRunView(name=name, phase=phase, message=message, kind=kind, revision=revision)
    if status is None:
        return view
    measurements: list[MeasurementView] = []
    judge: JudgeEvidence | None = None
    for result in status.metric_results:
        measurements.extend(measurements_of(result))
        judge = judge or evidence_of(result, (tolerated or {}).get(result.name, 1.0))
    measurements.sort(key=lambda m: m.at)
    return view.model_copy(update={"measurements": measurements[-MEASUREMENTS:], "judge": judge})


def run_view_of(body: dict[str, Any], *, kind_label: str = "", revision: str | None = None) -> AnalysisRunView:
    """An AnalysisRun in its wire form (a Kubernetes object). A status that does not parse still shows the run's
    phase and message, with the parse problem appended: the page must never fail on one odd run."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    raw = body.get("status") or {}
    phase, message = str(raw.get("phase") or "Pending"), str(raw.get("message") or "")
    status: AnalysisRunStatus | None = None
    if raw:
        try:
            status = AnalysisRunStatus.model_validate(raw)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            message = (message + "; " if message else "") + f"status.{where}: {problem['msg']}"
    labels = meta.get("labels") or {}
    return run_view(
        str(meta.get("name", "")),
        phase,
        message,
        status,
        kind=str(labels.get(kind_label, "")) if kind_label else "",
        revision=revision or spec.get("revision") or labels.get(HASH_LABEL) or None,
        tolerated=tolerated_ratios(spec),
    )


def tolerated_ratios(spec: dict[str, Any]) -> dict[str, float]:
    """Each judge metric's ``toleratedRatio`` from a run's spec (wire form)."""
    found = {}
    for metric in spec.get("metrics") or []:
        plugin = ((metric.get("provider") or {}).get("plugin") or {}).get(JUDGE_PLUGIN)
        if isinstance(plugin, dict):
            ratio = _float(str(plugin.get("toleratedRatio", "")))
            if ratio is not None:
                found[str(metric.get("name"))] = ratio
    return found


def measurements_of(result: MetricResult) -> list[MeasurementView]:
    views = []
    for measurement in result.measurements:
        at = _when(measurement.finished_at) or _when(measurement.started_at)
        if at is None:
            continue
        views.append(
            MeasurementView(
                metric=result.name,
                at=at,
                value=_value(measurement),
                phase=str(measurement.phase.value),
                message=measurement.message or "",
            )
        )
    return views


def evidence_of(result: MetricResult, tolerated: float = 1.0) -> JudgeEvidence | None:
    """The judge's latest figures on a metric result, with the history of its ratio estimate for the chart."""
    if not all(key in result.metadata for key in JUDGE_KEYS):
        return None
    ratio, p_value = _float(result.metadata["ratio"]), _float(result.metadata["pValue"])
    if ratio is None or p_value is None:
        return None
    history = []
    canary = stable = 0
    for measurement in result.measurements:
        at, point = _when(measurement.finished_at), _float(measurement.metadata.get("ratio"))
        if at is not None and point is not None:
            lower, upper = _float(measurement.metadata.get("lower")), _float(measurement.metadata.get("upper"))
            history.append(JudgePoint(at=at, ratio=point, lower=lower, upper=upper))
        counts = _counts(measurement.value)
        canary += counts.get("canaryRequests", counts.get("canary_requests", 0))
        stable += counts.get("stableRequests", counts.get("stable_requests", 0))
    return JudgeEvidence(
        ratio=ratio,
        lower=_float(result.metadata["lower"]),
        upper=_float(result.metadata["upper"]),
        p_value=p_value,
        tolerated_ratio=tolerated,
        verdict=result.metadata["explanation"],
        canary_requests=canary,
        stable_requests=stable,
        history=history[-MEASUREMENTS:],
        metric=result.name,
    )


def _when(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _value(measurement: Measurement) -> float | None:
    """A number to chart: the value itself, or for a judge window the judge's ratio estimate."""
    ratio = _float(measurement.metadata.get("ratio"))
    if ratio is not None:
        return ratio
    raw = measurement.value
    if raw is None:
        return None
    number = _float(raw)
    if number is not None:
        return number
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    if isinstance(decoded, list) and len(decoded) == 1:
        return _float(str(decoded[0]))
    return None


def _float(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None  # NaN and infinity chart as a gap (and are not JSON)


def _counts(raw: str | None) -> dict[str, int]:
    try:
        decoded = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    return {str(k): int(v) for k, v in decoded.items() if isinstance(v, int | float) and not isinstance(v, bool)}
