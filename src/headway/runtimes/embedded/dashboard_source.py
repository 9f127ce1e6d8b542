"""The dashboard's `RolloutSource` over the embedded runner: what the daemon mounts under ``/dashboard/``.

Views are built from the same facts the daemon's JSON API shows (`headway.runtimes.embedded.daemon.detail`),
turned into `headway.dashboard.model` values so the page and ``headway get rollout`` render one shape in every
mode. Revisions are groups of local processes; analysis runs carry their measurements and the judge's evidence
(read from the run's metric results, where the executor copies the latest p-value, ratio and bounds); the weight
chart reads the runner's per-rollout history ring. Actions become runner commands, and changes come from the
runner's change stream, so the page moves as soon as a pass records something.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from headway.dashboard.model import (
    Action,
    ActionRefusedError,
    ActionResult,
    AnalysisRunView,
    ChangeEvent,
    EventView,
    JudgeEvidence,
    JudgePoint,
    MeasurementView,
    RevisionView,
    RolloutNotFoundError,
    RolloutView,
    WeightPoint,
    with_roles,
)
from headway.platforms.base import rollout_key
from headway.runtimes.embedded.daemon import detail
from headway.runtimes.embedded.runner import CommandError, Runner
from headway.spec.analysis import AnalysisRun, Measurement, MetricResult
from headway.spec.rollout import Rollout

MEASUREMENTS = 120
"""Measurements per run sent to the page (the newest); enough for a chart, small enough to refetch often."""
JUDGE_KEYS = ("pValue", "ratio", "lower", "upper", "explanation")

RunLookup = Callable[[str], AnalysisRun | None]


class RunnerSource:
    """A `headway.dashboard.source.RolloutSource` over a `Runner`; ``runs`` looks analysis runs up by name."""

    def __init__(self, runner: Runner, *, runs: RunLookup | None = None) -> None:
        self.runner = runner
        self.runs = runs

    async def list_rollouts(self) -> list[RolloutView]:
        return [self._view(rollout).summary() for rollout in self.runner.rollouts().values()]

    async def get_rollout(self, name: str, namespace: str) -> RolloutView:
        return self._view(self._rollout(name, namespace))

    async def act(self, name: str, namespace: str, action: Action, args: Mapping[str, Any]) -> ActionResult:
        rollout = self._rollout(name, namespace)
        verb, options = _command(action, args)
        try:
            self.runner.command(rollout_key(rollout), verb, **options)
        except CommandError as error:
            if error.status == 404:
                raise RolloutNotFoundError(str(error)) from None
            raise ActionRefusedError(str(error)) from None
        return ActionResult(ok=True, message=f"{action.value} requested for {namespace}/{name}")

    async def subscribe(self) -> AsyncIterator[ChangeEvent]:
        """Every recorded event as it comes; a status change without one (a replica became ready) refreshes all."""
        after = self.runner.sequence
        while True:
            sequence = await self.runner.wait_for_change(after, 30.0)
            if sequence == after:
                continue
            events = self.runner.events_after(after)
            for event in events:
                yield ChangeEvent(
                    rollout=event.rollout, reason=event.reason, message=event.message, type=event.type, at=event.at
                )
            if not events:
                for key in self.runner.rollouts():
                    yield ChangeEvent(rollout=key)
            after = sequence

    # --- views -----------------------------------------------------------------------------------------------

    def _rollout(self, name: str, namespace: str) -> Rollout:
        try:
            return self.runner.rollout(f"{namespace}/{name}")
        except CommandError as error:
            raise RolloutNotFoundError(f"no rollout named {name} in namespace {namespace}") from error

    def _view(self, rollout: Rollout) -> RolloutView:
        data = detail(self.runner, rollout)
        key = rollout_key(rollout)
        revisions = [
            RevisionView(
                hash=r["hash"],
                number=r.get("number", 0),
                replicas=r.get("replicas", 0),
                ready=r.get("ready", 0),
                available=r.get("available", 0),
                image=r.get("image"),
            )
            for r in data["revisions"]
        ]
        view = RolloutView.model_validate(
            {
                **{k: v for k, v in data.items() if k not in ("revisions", "analysisRuns", "experiments", "events")},
                "revisionKind": "Processes",
                "paused": bool(data.get("paused")) or bool(data["status"].get("pauseConditions")),
                "readyReplicas": sum(r.ready for r in revisions),
            }
        )
        return with_roles(
            view.model_copy(
                update={
                    "revisions": revisions,
                    "analysis_runs": [self._run(run) for run in data["analysisRuns"]],
                    "experiments": [self._run(run) for run in data["experiments"]],
                    "events": [
                        EventView(at=e["at"], type=e["type"], reason=e["reason"], message=e["message"])
                        for e in reversed(data["events"])
                    ],
                    "weight_history": [WeightPoint(at=at, set=w) for at, w in self.runner.weights.get(key, ())],
                }
            )
        )

    def _run(self, summary: Mapping[str, str]) -> AnalysisRunView:
        run = self.runs(summary["name"]) if self.runs is not None else None
        return run_view(summary["name"], _phase(summary["phase"]), summary["message"] or "", run)


def run_view(name: str, phase: str, message: str, run: AnalysisRun | None) -> AnalysisRunView:
    """An analysis run for the page: its measurements to chart and, for a judge metric, the judge's evidence."""
    view = AnalysisRunView(name=name, phase=phase, message=message)
    if run is None or run.status is None:
        return view
    measurements: list[MeasurementView] = []
    judge: JudgeEvidence | None = None
    for result in run.status.metric_results:
        measurements.extend(_measurements(result))
        judge = judge or _evidence(result)
    measurements.sort(key=lambda m: m.at)
    labels = run.metadata.labels or {}
    return view.model_copy(
        update={
            "measurements": measurements[-MEASUREMENTS:],
            "judge": judge,
            "kind": labels.get("headway.dev/kind", ""),
            "revision": labels.get("rollouts-pod-template-hash") or None,
        }
    )


def _phase(raw: str) -> str:
    """``AnalysisPhase.RUNNING`` printed by str() on an enum reads as its value."""
    return raw.rsplit(".", 1)[-1].title() if raw.startswith("AnalysisPhase.") else raw


def _command(action: Action, args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if action is Action.PROMOTE_FULL:
        return "promote", {"full": True}
    if action is Action.UNDO:
        to_revision = args.get("toRevision")
        if to_revision is not None and (not isinstance(to_revision, int) or isinstance(to_revision, bool)):
            raise ActionRefusedError("toRevision: expected a revision number")
        return "undo", {"to_revision": to_revision} if to_revision is not None else {}
    return action.value, {}


def _when(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _measurements(result: MetricResult) -> list[MeasurementView]:
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
        return float(raw)
    except ValueError:
        return None


def _evidence(result: MetricResult) -> JudgeEvidence | None:
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
        verdict=result.metadata["explanation"],
        canary_requests=canary,
        stable_requests=stable,
        history=history[-MEASUREMENTS:],
    )


def _counts(raw: str | None) -> dict[str, int]:
    try:
        decoded = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    return {str(k): int(v) for k, v in decoded.items() if isinstance(v, int | float) and not isinstance(v, bool)}
