"""The dashboard's `RolloutSource` over the embedded runner: what the daemon mounts under ``/dashboard/``.

Views are built from the same facts the daemon's JSON API shows (`headway.runtimes.embedded.daemon.detail`),
turned into `headway.dashboard.model` values so the page and ``headway get rollout`` render one shape in every
mode. Revisions are groups of local processes; analysis runs carry their measurements and the judge's evidence
(read from the run's metric results, where the executor copies the latest p-value, ratio and bounds); the weight
chart reads the runner's per-rollout history ring. Actions become runner commands, and changes come from the
runner's change stream, so the page moves as soon as a pass records something.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from headway.dashboard.model import (
    Action,
    ActionRefusedError,
    ActionResult,
    AnalysisRunView,
    ChangeEvent,
    EventView,
    RevisionView,
    RolloutNotFoundError,
    RolloutView,
    WeightPoint,
    with_roles,
)
from headway.dashboard.runs import HASH_LABEL, tolerated_ratios
from headway.dashboard.runs import run_view as shared_run_view
from headway.runtimes.embedded.daemon import detail
from headway.runtimes.embedded.runner import CommandError, Runner
from headway.spec.analysis import AnalysisRun
from headway.spec.rollout import Rollout, rollout_key

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
            await self.runner.act(rollout_key(rollout), verb, **options)
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
                    "weight_history": [WeightPoint(at=at, set=w) for at, w in self.runner.weight_history(key)],
                }
            )
        )

    def _run(self, summary: Mapping[str, str]) -> AnalysisRunView:
        run = self.runs(summary["name"]) if self.runs is not None else None
        return run_view(summary["name"], _phase(summary["phase"]), summary["message"] or "", run)


def run_view(name: str, phase: str, message: str, run: AnalysisRun | None) -> AnalysisRunView:
    """An analysis run for the page, as `headway.dashboard.runs` builds it in every mode (measurements to chart
    and, for a judge metric, the judge's evidence against its tolerated ratio)."""
    if run is None:
        return shared_run_view(name, phase, message, None)
    labels = run.metadata.labels or {}
    return shared_run_view(
        name,
        phase,
        message,
        run.status,
        kind=labels.get("headway.dev/kind", ""),
        revision=labels.get(HASH_LABEL) or None,
        tolerated=tolerated_ratios(run.spec.model_dump(by_alias=True, mode="json", exclude_none=True)),
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
