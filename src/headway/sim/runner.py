"""Run a whole rollout in virtual time: the real engine against fake adapters, a traffic model and a scenario.

The story always has the same shape. The manifest's template is deployed first and left to become healthy (the
stable revision); then its image changes, which starts the rollout, and the clock restarts at 0. Each pass moves
the fakes and the traffic model to the current virtual time, calls `Engine.run_pass` exactly as a runtime would,
and records a timeline entry when something a user would notice changed. The next pass comes at the earliest of
the decision's ``requeue_after``, the next change in the fakes (a pod becoming ready, a run completing: what a
watch would deliver), and a fixed tick (a resync).

It stops when the rollout is promoted (the new revision is stable and Healthy), when an abort is complete (Degraded
and the canary scaled down), when nothing can change any more without a user (paused waiting for ``promote``, or
Degraded after the progress deadline), or at the time limit. A scenario may play the user and promote after a
while (`headway.core.commands.promote`, written with the version read, like `headway promote` would).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal

from headway.core import commands
from headway.core.analysis import JUDGE_PLUGIN
from headway.core.decision import Decision, Event, EventType
from headway.engine.reconcile import Engine, PassResult
from headway.manifest_files import load_manifest_file
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.fake import FakeRouter
from headway.sim import scenarios
from headway.sim.analysis import SimAnalysis, TrafficCounts
from headway.sim.runs import ScriptedRuns
from headway.sim.traffic import Profile, TrafficModel, split
from headway.spec.analysis import AnalysisTemplate
from headway.spec.load import Problem, Severity, SpecError
from headway.spec.rollout import Rollout, rollout_key
from headway.spec.status import Phase, RolloutStatus
from headway.spec.validate import validate
from headway.stores.memory import MemoryStore

DEFAULT_TICK = 10.0
DEFAULT_TIME_LIMIT = 3 * 3600.0
SETUP_LIMIT = 3600.0
"""Virtual seconds the first (stable) deploy may take before the simulation gives up."""
WAITING_FOR_PROMOTE = "waiting for promote"
_FALLBACK_TEMPLATE: Mapping[str, Any] = {"spec": {"containers": [{"name": "app", "image": "app:1.0.0"}]}}


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ABORTED = "aborted"
    PAUSED = "paused"
    DEGRADED = "degraded"
    """The progress deadline passed without ``progressDeadlineAbort``: stuck, not rolled back."""
    TIMED_OUT = "timed-out"


class _Default(Enum):
    SCENARIO = "scenario"


FROM_SCENARIO = _Default.SCENARIO
"""Option value meaning "what the scenario says"."""


@dataclass(frozen=True)
class RevisionRow:
    """One revision in a timeline entry: its role in the story, hash and pod counts."""

    role: str
    hash: str
    replicas: int
    ready: int
    available: int


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    """Virtual seconds since the template changed."""
    phase: str
    message: str
    step: int | None
    weight: int
    """Percent of user requests the canary receives (the router's effective weight when routed)."""
    revisions: tuple[RevisionRow, ...]
    analyses: tuple[tuple[str, str], ...]
    """(run name, phase) of every analysis run and experiment of the rollout."""
    events: tuple[str, ...]
    """``Reason: message`` of the events of this pass."""

    def state(self) -> tuple[object, ...]:
        """Everything but time and events: an entry is recorded when this changes or a pass has events."""
        return (self.phase, self.message, self.step, self.weight, self.revisions, self.analyses)

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "phase": self.phase,
            "message": self.message,
            "step": self.step,
            "weight": self.weight,
            "revisions": [row.__dict__ for row in self.revisions],
            "analyses": dict(self.analyses),
            "events": list(self.events),
        }


@dataclass(frozen=True)
class Summary:
    scenario: str
    outcome: Outcome
    reason: str
    duration_seconds: float
    canary_requests: int
    """Requests the new revision received."""
    failed_requests: int
    """Failed requests users saw, whichever revision (or none) they reached."""
    total_requests: int
    steps_completed: int
    """The furthest step reached (an abort resets the step index; this does not forget)."""
    steps: int
    promotions: int
    """``promote`` commands the simulated user sent."""
    passes: int
    stable_hash: str
    canary_hash: str

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "outcome": self.outcome.value}


@dataclass(frozen=True)
class SimResult:
    """The outcome of `run_scenario`: what users saw (timeline, summary) and the fakes, for assertions."""

    rollout: Rollout
    scenario: scenarios.Scenario
    timeline: tuple[TimelineEntry, ...]
    summary: Summary
    status: RolloutStatus
    events: tuple[tuple[float, Event], ...]
    """Every event of every pass (setup excluded), with its virtual time."""
    platform: FakePlatform
    router: FakeRouter | None
    runs: ScriptedRuns | SimAnalysis
    traffic: TrafficModel

    @property
    def outcome(self) -> Outcome:
        return self.summary.outcome

    def reasons(self) -> list[str]:
        """The event reasons in order: the shortest readable assertion on what happened."""
        return [event.reason for _, event in self.events]

    def as_dict(self) -> dict[str, object]:
        return {"timeline": [entry.as_dict() for entry in self.timeline], "summary": self.summary.as_dict()}


def load_rollout(path: str | Path) -> Rollout:
    """The first Rollout of a manifest file, checked like `headway lint` does; `SpecError` with every error."""
    return load_manifests(path)[0]


def load_manifests(path: str | Path) -> tuple[Rollout, dict[str, AnalysisTemplate]]:
    """The first Rollout of a manifest file and the AnalysisTemplates beside it, by name."""
    documents = load_manifest_file(path)
    problems = [problem for document in documents for problem in document.problems] + validate(documents)
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        raise SpecError(errors)
    rollouts = [document.model for document in documents if isinstance(document.model, Rollout)]
    if not rollouts:
        raise SpecError([Problem(str(path), "", "", "", "no Rollout in this file", Severity.ERROR)])
    templates = {
        document.model.metadata.name: document.model
        for document in documents
        if isinstance(document.model, AnalysisTemplate)
    }
    return rollouts[0], templates


def _judge_sources(templates: Mapping[str, AnalysisTemplate]) -> set[str]:
    """The counting providers judge metrics name (``source: proxy``)."""
    sources = set()
    for template in templates.values():
        for metric in template.spec.metrics:
            config = (metric.provider.plugin or {}).get(JUDGE_PLUGIN)
            if isinstance(config, Mapping) and isinstance(config.get("source"), str):
                sources.add(config["source"])
    return sources


def measurable(templates: Mapping[str, AnalysisTemplate]) -> bool:
    """Whether the simulator can run these templates for real: every metric is a judge over request counts.

    Other providers (Prometheus, web, job) would need the real backends, so their verdicts stay scripted.
    """
    metrics = [metric for template in templates.values() for metric in template.spec.metrics]
    return bool(metrics) and all(
        metric.provider.plugin is not None and JUDGE_PLUGIN in metric.provider.plugin for metric in metrics
    )


def run_scenario(
    source: str | Path | Rollout,
    scenario: str | scenarios.Scenario = "good",
    *,
    auto_promote_after: float | Literal[_Default.SCENARIO] | None = FROM_SCENARIO,
    time_limit: float = DEFAULT_TIME_LIMIT,
    tick: float = DEFAULT_TICK,
    image: str | None = None,
    start: datetime = EPOCH,
    templates: Mapping[str, AnalysisTemplate] | None = None,
) -> SimResult:
    """Simulate the rollout of a new image of ``source`` (a manifest path or a Rollout) under ``scenario``.

    ``auto_promote_after`` overrides the scenario's simulated user (None: nobody promotes); ``image`` is the new
    image (default: the old one with its version bumped). When the AnalysisTemplates (from the file, or
    ``templates``) are judge-based, analysis runs for real on the simulated traffic; otherwise the scenario
    scripts the verdicts.
    """
    chosen = scenarios.scenario(scenario) if isinstance(scenario, str) else scenario
    found: dict[str, AnalysisTemplate] = {}
    if isinstance(source, Rollout):
        base = source
    else:
        base, found = load_manifests(source)
    templates = dict(templates) if templates is not None else found
    promote_after = chosen.auto_promote_after if auto_promote_after is FROM_SCENARIO else auto_promote_after
    simulation = _Simulation(
        base,
        chosen,
        promote_after=promote_after,
        tick=tick,
        start=start,
        image=image,
        templates=templates if measurable(templates) else None,
    )
    return simulation.run(time_limit)


# --- the simulation ------------------------------------------------------------------------------------------


class _Simulation:
    def __init__(
        self,
        base: Rollout,
        scenario: scenarios.Scenario,
        *,
        promote_after: float | None,
        tick: float,
        start: datetime,
        image: str | None,
        templates: Mapping[str, AnalysisTemplate] | None = None,
    ) -> None:
        self.scenario = scenario
        self.promote_after = promote_after
        self.tick = tick
        self.now = start
        self.stable_rollout = _with_template(base, base.spec.template or _FALLBACK_TEMPLATE, generation=1)
        old_template = self.stable_rollout.spec.template or {}
        new_template = with_image(old_template, image)
        self.new_template = new_template
        self.rollout = _with_template(base, new_template, generation=2)
        self.key = rollout_key(base)
        self.platform = FakePlatform(startup_seconds=scenario.stable.startup_seconds, now=start)
        self.platform.startup_when(lambda _hash, template: template == new_template, scenario.canary.startup_seconds)
        canary = base.spec.strategy.canary
        routed = canary is not None and canary.traffic_routing is not None
        self.router = FakeRouter(now=start) if routed else None
        self.traffic = TrafficModel(rps=scenario.requests_per_second, profile=self._profile, now=start)
        self.runs: ScriptedRuns | SimAnalysis
        if templates is None:
            self.runs = ScriptedRuns(script=scenario.runs, now=start)
        else:
            counts = TrafficCounts(self.traffic, lambda: (self.canary_hash or None, self.stable_hash or None))
            # Whatever counts requests in production (the proxy, Prometheus), the traffic model counts them here.
            sources = {JUDGE_PLUGIN, *_judge_sources(templates)}
            self.runs = SimAnalysis(templates=templates, providers=dict.fromkeys(sources, counts), now=start)
        self.store = MemoryStore()
        self.engine = Engine(platform=self.platform, router=self.router, runs=self.runs, store=self.store)
        self.timeline: list[TimelineEntry] = []
        self.events: list[tuple[float, Event]] = []
        self.passes = 0
        self.promotions = 0
        self.stable_hash = ""
        self.canary_hash = ""
        self.t0 = start
        self.waiting_since: datetime | None = None
        self.user_events: list[Event] = []
        self.refused = ""
        """Why the simulated user's promote was refused (the story ends there)."""
        """What the simulated user did since the last pass; shown with that pass."""

    def run(self, time_limit: float) -> SimResult:
        if not self._setup():
            return self._result(Outcome.TIMED_OUT, "the stable revision never became healthy")
        self.t0 = self.now
        shares: Mapping[str, float] = {}
        ready: Mapping[str, int] = {}
        zero_steps = 0
        while True:
            self._advance(shares, ready)
            result = self.engine.run_pass(self.rollout, now=self.now)
            self.passes += 1
            status, _ = self.store.load(self.key)
            self.canary_hash = status.current_pod_hash or self.canary_hash
            shares = split(self.rollout, self.platform, self.router)
            ready = {h: r.ready for h, r in self.platform.revisions(self.rollout).items()}
            self._record(status, result.outcome(), shares)
            finished = self._finished(status, result)
            if finished is not None:
                return self._result(*finished)
            wake = self._next_wake(result)
            if wake is None:  # the simulated user promotes now
                continue
            if wake <= self.now:
                zero_steps += 1
                wake = self.now if zero_steps < 5 else self.now + timedelta(seconds=self.tick)
            else:
                zero_steps = 0
            if (wake - self.t0).total_seconds() > time_limit:
                self._advance(shares, ready, until=self.t0 + timedelta(seconds=time_limit))
                return self._result(Outcome.TIMED_OUT, f"no outcome within {time_limit:g} s of virtual time")
            self._advance(shares, ready, until=wake)

    # --- phases of the story -------------------------------------------------------------------------------

    def _setup(self) -> bool:
        """Deploy the manifest's template and wait until it is the healthy stable revision."""
        limit = self.now + timedelta(seconds=SETUP_LIMIT)
        while self.now <= limit:
            self._move_fakes(self.now)
            result = self.engine.run_pass(self.stable_rollout, now=self.now)
            status, _ = self.store.load(self.key)
            if status.phase == Phase.HEALTHY and status.stable_rs is not None:
                self.stable_hash = status.stable_rs
                self.traffic.now = self.now
                return True
            self.now = self._earliest(result.requeue_after, self.now + timedelta(seconds=self.tick))
        return False

    def _finished(self, status: RolloutStatus, result: PassResult) -> tuple[Outcome, str] | None:
        if status.stable_rs == self.canary_hash and status.phase == Phase.HEALTHY:
            return Outcome.PROMOTED, "the new revision is stable and healthy"
        canary = self.platform.revision(self.key, self.canary_hash)
        if status.abort and status.phase == Phase.DEGRADED and (canary is None or canary.replicas == 0):
            return Outcome.ABORTED, status.message or "aborted"
        if not self._settled(result):
            return None
        if status.phase == Phase.DEGRADED and not status.abort:
            return Outcome.DEGRADED, status.message or "degraded"
        if status.phase == Phase.PAUSED and (self.promote_after is None or self.refused):
            return Outcome.PAUSED, self.refused or WAITING_FOR_PROMOTE
        return None

    def _settled(self, result: PassResult) -> bool:
        """Nothing will change without a user: no timer, no pod or run about to change, and the pass saved."""
        return (
            result.requeue_after is None
            and result.failure is None
            and self.platform.next_change_at() is None
            and self.runs.next_change_at() is None
            and (self.router is None or self.router.next_change_at() is None)
        )

    def _next_wake(self, result: PassResult) -> datetime | None:
        """When to run the next pass; None: now, after the simulated user promoted."""
        status, version = self.store.load(self.key)
        if status.phase != Phase.PAUSED:
            self.waiting_since = None
        elif self._settled(result) and self.promote_after is not None:
            self.waiting_since = self.waiting_since or self.now
            due = self.waiting_since + timedelta(seconds=self.promote_after)
            if self.now >= due:
                try:
                    self.rollout, promoted = commands.promote(self.rollout, status)
                except commands.ControlError as refused:
                    self.refused = f"{WAITING_FOR_PROMOTE} (promote refused: {refused})"
                    return self.now
                self.store.save(self.key, promoted, version)
                self.promotions += 1
                self.waiting_since = None
                self.user_events.append(_user_event())
                return None
            return self._earliest(result.requeue_after, due)
        return self._earliest(result.requeue_after, self.now + timedelta(seconds=self.tick))

    def _earliest(self, requeue_after: float | None, latest: datetime) -> datetime:
        candidates = [latest]
        if requeue_after is not None:
            candidates.append(self.now + timedelta(seconds=requeue_after))
        for fake_change in (
            self.platform.next_change_at(),
            self.runs.next_change_at(),
            self.router.next_change_at() if self.router is not None else None,
        ):
            if fake_change is not None:
                candidates.append(fake_change)
        return min(candidates)

    # --- the world -----------------------------------------------------------------------------------------

    def _move_fakes(self, now: datetime) -> None:
        self.platform.advance(now)
        self.runs.advance(now)
        if self.router is not None:
            self.router.advance(now)

    def _advance(self, shares: Mapping[str, float], ready: Mapping[str, int], *, until: datetime | None = None) -> None:
        """Let traffic flow as it was routed until ``until`` (default: now), then move the fakes there."""
        until = until or self.now
        self.traffic.advance(until, shares, ready)
        self.now = until
        self._move_fakes(until)

    def _profile(self, pod_hash: str) -> Profile:
        template = self.platform.template_of(self.key, pod_hash)
        behaviour = self.scenario.canary if template == self.new_template else self.scenario.stable
        return behaviour.profile()

    # --- records -------------------------------------------------------------------------------------------

    def _at(self) -> float:
        return (self.now - self.t0).total_seconds()

    def _record(self, status: RolloutStatus, decision: Decision, shares: Mapping[str, float]) -> None:
        at = self._at()
        events = (*self.user_events, *decision.events)
        self.user_events.clear()
        self.events.extend((at, event) for event in events)
        analysis, experiments = self.runs.observe(self.rollout)
        runs = {**analysis, **experiments}
        entry = TimelineEntry(
            at=at,
            phase=status.phase.value if status.phase else "",
            message=status.message,
            step=status.current_step_index,
            weight=round(100 * shares.get(self.canary_hash, 0.0)) if self.canary_hash != self.stable_hash else 0,
            revisions=self._rows(),
            analyses=tuple((name, run.phase.value) for name, run in runs.items()),
            events=tuple(f"{event.reason}: {event.message}" for event in events),
        )
        if not self.timeline or entry.events or entry.state() != self.timeline[-1].state():
            self.timeline.append(entry)

    def _rows(self) -> tuple[RevisionRow, ...]:
        rows = []
        for pod_hash, state in sorted(self.platform.revisions(self.rollout).items(), key=lambda item: item[1].number):
            role = "canary" if pod_hash == self.canary_hash else "stable" if pod_hash == self.stable_hash else "old"
            rows.append(RevisionRow(role, pod_hash, state.replicas, state.ready, state.available))
        return tuple(rows)

    def _result(self, outcome: Outcome, reason: str) -> SimResult:
        status, _ = self.store.load(self.key)
        steps = len(self.rollout.spec.strategy.canary.steps) if self.rollout.spec.strategy.canary else 0
        summary = Summary(
            scenario=self.scenario.name,
            outcome=outcome,
            reason=reason,
            duration_seconds=self._at(),
            canary_requests=round(self.traffic.requests(self.canary_hash)) if self.canary_hash else 0,
            failed_requests=round(self.traffic.failed()),
            total_requests=round(self.traffic.total()),
            steps_completed=min(max((entry.step or 0 for entry in self.timeline), default=0), steps),
            steps=steps,
            promotions=self.promotions,
            passes=self.passes,
            stable_hash=self.stable_hash,
            canary_hash=self.canary_hash,
        )
        return SimResult(
            rollout=self.rollout,
            scenario=self.scenario,
            timeline=tuple(self.timeline),
            summary=summary,
            status=status,
            events=tuple(self.events),
            platform=self.platform,
            router=self.router,
            runs=self.runs,
            traffic=self.traffic,
        )


def _user_event() -> Event:
    return Event(EventType.NORMAL, "UserPromoted", "the simulated user ran `headway promote`")


# --- templates ---------------------------------------------------------------------------------------------------

_SEMVER = re.compile(r"^(v?)(\d+)\.(\d+)\.(\d+)$")


def bump_image(image: str) -> str:
    """The next version of an image: ``app:1.4.2`` → ``app:1.5.0``; other tags get ``-next``; no tag → ``:next``."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return f"{image}:next"
    match = _SEMVER.match(tag)
    if match:
        prefix, major, minor, _ = match.groups()
        return f"{name}:{prefix}{major}.{int(minor) + 1}.0"
    return f"{name}:{tag}-next"


def with_image(template: Mapping[str, Any], image: str | None = None) -> dict[str, Any]:
    """A copy of a pod template whose first container runs ``image`` (default: `bump_image` of its image)."""
    spec = dict(template.get("spec") or {})
    containers: Sequence[Mapping[str, Any]] = spec.get("containers") or [{"name": "app", "image": "app:1.0.0"}]
    first = dict(containers[0])
    first["image"] = image or bump_image(str(first.get("image") or "app:1.0.0"))
    spec["containers"] = [first, *containers[1:]]
    return {**template, "spec": spec}


def _with_template(rollout: Rollout, template: Mapping[str, Any], *, generation: int) -> Rollout:
    """The rollout with ``template`` inline (a workloadRef's template is not ours to fetch in a simulation)."""
    spec = rollout.spec.model_copy(update={"template": dict(template), "workload_ref": None})
    metadata = rollout.metadata.model_copy(update={"generation": generation})
    return rollout.model_copy(update={"spec": spec, "metadata": metadata})
