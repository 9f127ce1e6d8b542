"""A `RolloutSource` over the simulator: the real engine on the fakes, in virtual time advanced by a timer.

``headway dashboard --demo`` and the browser test need live rollouts without processes or a cluster. Each demo
rollout gets its own fakes (platform, router, scripted runs, memory store) and `headway.engine.reconcile.Engine`,
exactly like `headway.sim.runner`; the difference is the clock: a background task moves virtual time forward by
``speed`` seconds per real second, running the passes that fall due, so the page sees weights change, pauses wait
for a real click on promote, and a bad canary aborts.

Measurements are computed from the traffic model in windows (the error rate each revision served), and the same
windows go to the sequential judge (`headway.core.judge`), whose ratio estimate, confidence bounds and p-value
the page charts. The scripted run verdicts still decide the rollout (the simulator's analyses are scripted); the
judge's evidence is shown next to them, as it would be for a real run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from headway.core import commands
from headway.core import judge as judging
from headway.core.decision import Event, EventType
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
    steps_of,
    with_roles,
)
from headway.engine.reconcile import Engine, PassResult
from headway.platforms.fake import FakePlatform
from headway.routers.fake import FakeRouter
from headway.sim import scenarios
from headway.sim.runner import bump_image, with_image
from headway.sim.runs import ScriptedRuns
from headway.sim.traffic import TrafficModel, split
from headway.spec.rollout import Rollout, rollout_key
from headway.spec.status import Phase, RolloutStatus
from headway.stores.memory import MemoryStore

RESYNC = 5.0
"""Virtual seconds between passes when nothing else is due (what a resync would do)."""
WINDOW = 10.0
"""Virtual seconds per measurement window."""
REST = 30.0
"""Virtual seconds a looping demo rollout rests between a finished update and the next image."""
HISTORY = 300
JUDGE = judging.JudgeConfig()
RUNS = 4
"""Analysis runs shown per rollout (the newest)."""
EVENTS = 50


@dataclass(frozen=True)
class DemoRollout:
    rollout: Rollout
    scenario: scenarios.Scenario = field(default_factory=lambda: scenarios.scenario("good"))
    loop: bool = True
    """Deploy the next image a while after an update finishes (promoted or aborted), forever."""


@dataclass
class _Window:
    requests: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)


class _Live:
    """One demo rollout and its world."""

    def __init__(self, demo: DemoRollout, now: datetime) -> None:
        self.demo = demo
        self.now = now
        self.key = rollout_key(demo.rollout)
        scenario = demo.scenario
        self.platform = FakePlatform(startup_seconds=scenario.stable.startup_seconds, now=now)
        self.router = FakeRouter(now=now)
        self.runs = ScriptedRuns(script=scenario.runs, now=now)
        self.engine = Engine(platform=self.platform, router=self.router, runs=self.runs, store=MemoryStore())
        self.traffic = TrafficModel(rps=scenario.requests_per_second, profile=self._profile, now=now)
        self.rollout = demo.rollout
        self.canary_templates: list[dict[str, Any]] = []
        self.events: list[EventView] = []
        self.weights: list[WeightPoint] = []
        self.measurements: dict[str, list[MeasurementView]] = {}
        self.judges: dict[str, list[JudgePoint]] = {}
        self.run_counts: dict[str, list[float]] = {}
        """Per analysis run: canary requests, canary failed, stable requests, stable failed since it started."""
        self.run_windows: dict[str, list[judging.Window]] = {}
        self.verdicts: dict[str, judging.JudgeResult] = {}
        self.window = _Window()
        self.window_start = now
        self.finished_at: datetime | None = None
        self._settle_stable()
        self.traffic.served.clear()  # requests that found no ready pod during the first deploy are not evidence
        self.window = _Window()
        self.deploy(with_image(self.rollout.spec.template or {}))

    # --- the world -------------------------------------------------------------------------------------------

    def _profile(self, pod_hash: str) -> Any:
        template = self.platform.template_of(self.key, pod_hash)
        canary = template in self.canary_templates
        return (self.demo.scenario.canary if canary else self.demo.scenario.stable).profile()

    def _settle_stable(self) -> None:
        """Deploy the manifest's template and let it become the healthy stable revision (virtual time)."""
        for _ in range(1000):
            self.engine.run_pass(self.rollout, now=self.now)
            status = self.status()
            if status.phase == Phase.HEALTHY and status.stable_rs is not None:
                return
            nxt = self.platform.next_change_at() or self.now + timedelta(seconds=1)
            self._move(max(nxt, self.now + timedelta(milliseconds=1)))
        raise RuntimeError(f"demo rollout {self.key} never became healthy")

    def deploy(self, template: dict[str, Any]) -> None:
        """Change the image: the rollout starts (the canary revision behaves like the scenario's canary)."""
        self.canary_templates.append(template)
        spec = self.rollout.spec.model_copy(update={"template": template})
        metadata = self.rollout.metadata.model_copy(update={"generation": (self.rollout.metadata.generation or 1) + 1})
        self.rollout = self.rollout.model_copy(update={"spec": spec, "metadata": metadata})
        self.finished_at = None

    def status(self) -> RolloutStatus:
        return self.engine.store.load(self.key)[0]

    def shares(self) -> dict[str, float]:
        return split(self.rollout, self.platform, self.router)

    def _move(self, until: datetime) -> None:
        shares = self.shares()
        ready = {h: r.ready for h, r in self.platform.revisions(self.rollout).items()}
        before = {h: (s.requests, s.failed) for h, s in self.traffic.served.items()}
        self.traffic.advance(until, shares, ready)
        for pod_hash, served in self.traffic.served.items():
            old_requests, old_failed = before.get(pod_hash, (0.0, 0.0))
            self.window.requests[pod_hash] = self.window.requests.get(pod_hash, 0.0) + served.requests - old_requests
            self.window.failed[pod_hash] = self.window.failed.get(pod_hash, 0.0) + served.failed - old_failed
        self.now = until
        self.platform.advance(until)
        self.runs.advance(until)
        self.router.advance(until)

    # --- time ------------------------------------------------------------------------------------------------

    def step_to(self, target: datetime) -> list[Event]:
        """Run every pass due until ``target``; returns their events."""
        events: list[Event] = []
        same_time = 0
        if target < self.now:
            return events
        while True:
            result = self.engine.run_pass(self.rollout, now=self.now)
            events.extend(self._record(result))
            wake = self._next_wake(result)
            if wake <= self.now:
                same_time += 1
                wake = self.now if same_time < 5 else self.now + timedelta(seconds=1)
            else:
                same_time = 0
            if wake > target:
                self._move(target)
                self._measure()
                return events
            self._move(wake)
            self._measure()

    def _next_wake(self, result: PassResult) -> datetime:
        candidates = [self.now + timedelta(seconds=RESYNC)]
        if result.requeue_after is not None:
            candidates.append(self.now + timedelta(seconds=result.requeue_after))
        for change in (self.platform.next_change_at(), self.runs.next_change_at(), self.router.next_change_at()):
            if change is not None:
                candidates.append(change)
        return min(candidates)

    def _record(self, result: PassResult) -> list[Event]:
        status = self.status()
        events = list(result.outcome().events)
        for event in events:
            self.events = [*self.events[-EVENTS + 1 :], EventView(at=self.now, **vars(event))]
        point = WeightPoint(at=self.now, set=_set_weight(status), actual=self.actual_weight(status))
        if not self.weights or (self.weights[-1].set, self.weights[-1].actual) != (point.set, point.actual):
            self.weights = [*self.weights[-HISTORY + 1 :], point]
        if self.demo.loop and self._finished(status):
            self.finished_at = self.finished_at or self.now
            if self.now - self.finished_at >= timedelta(seconds=REST):
                self.deploy(with_image(self.rollout.spec.template or {}, _next_image(self.rollout)))
                message = f"demo: deployed {_next_image_of(self.rollout)}"
                events.append(Event(EventType.NORMAL, "DemoImageChanged", message))
        return events

    def _finished(self, status: RolloutStatus) -> bool:
        promoted = status.phase == Phase.HEALTHY and status.current_pod_hash == status.stable_rs
        aborted = status.abort and status.phase == Phase.DEGRADED
        return promoted or aborted

    def actual_weight(self, status: RolloutStatus) -> int | None:
        canary = status.current_pod_hash
        if canary is None or canary == status.stable_rs:
            return 0
        return round(100 * self.shares().get(canary, 0.0))

    def _measure(self) -> None:
        """Close a measurement window for every running analysis run."""
        if (self.now - self.window_start).total_seconds() < WINDOW:
            return
        status = self.status()
        canary, stable = status.current_pod_hash, status.stable_rs
        window, self.window, self.window_start = self.window, _Window(), self.now
        if canary is None or canary == stable:
            return
        analysis, _ = self.runs.observe(self.rollout)
        for name, run in analysis.items():
            if run.phase.completed:
                continue
            n_t, x_t = window.requests.get(canary, 0.0), window.failed.get(canary, 0.0)
            rate = x_t / n_t if n_t > 0 else None
            measurement = MeasurementView(metric="error-rate", at=self.now, value=rate)
            self.measurements.setdefault(name, []).append(measurement)
            self._judge(name, window, canary, stable or "")

    def _judge(self, name: str, window: _Window, canary: str, stable: str) -> None:
        """Feed the window to the sequential judge (`headway.core.judge`), as integer counts.

        The traffic model deals in expected (fractional) counts; whole counts come from flooring the running
        totals, so no request is lost or invented across windows."""
        counts = self.run_counts.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        before = [math.floor(c) for c in counts]
        counts[0] += window.requests.get(canary, 0.0)
        counts[1] += window.failed.get(canary, 0.0)
        counts[2] += window.requests.get(stable, 0.0)
        counts[3] += window.failed.get(stable, 0.0)
        now = [math.floor(c) for c in counts]
        n_t, x_t, n_c, x_c = (a - b for a, b in zip(now, before, strict=True))
        windows = self.run_windows.setdefault(name, [])
        windows.append(judging.Window(n_t, min(x_t, n_t), n_c, min(x_c, n_c)))
        result = judging.judge(windows, JUDGE)
        self.verdicts[name] = result
        if result.ratio is not None:
            point = JudgePoint(at=self.now, ratio=result.ratio, lower=result.lower, upper=result.upper)
            self.judges.setdefault(name, []).append(point)

    # --- the view --------------------------------------------------------------------------------------------

    def view(self) -> RolloutView:
        status = self.status()
        canary = self.rollout.spec.strategy.canary
        revisions = []
        for state in sorted(self.platform.revisions(self.rollout).values(), key=lambda r: r.number):
            revisions.append(
                RevisionView(
                    hash=state.hash,
                    number=state.number,
                    replicas=state.replicas,
                    ready=state.ready,
                    available=state.available,
                    image=_image(self.platform.template_of(self.key, state.hash)),
                )
            )
        images = {r.hash: r.image for r in revisions}
        analysis, experiments = self.runs.observe(self.rollout)
        runs = []
        for name, run in list(analysis.items())[-RUNS:]:
            scripted = self.runs.analysis_runs.get(name)
            runs.append(
                AnalysisRunView(
                    name=name,
                    phase=run.phase.value,
                    message=run.message,
                    kind=scripted.kind if scripted else "",
                    measurements=self.measurements.get(name, [])[-HISTORY:],
                    judge=_evidence(self.verdicts.get(name), self.judges.get(name, [])),
                )
            )
        wire_spec = self.rollout.wire()["spec"]
        view = RolloutView(
            name=self.rollout.metadata.name,
            namespace=self.rollout.metadata.namespace,
            strategy="canary" if canary is not None else "blueGreen",
            phase=status.phase.value if status.phase else None,
            message=status.message,
            paused=self.rollout.spec.paused or bool(status.pause_conditions),
            aborted=status.abort,
            step=status.current_step_index,
            steps=len(canary.steps) if canary is not None else None,
            canary_weight=_set_weight(status),
            actual_weight=self.actual_weight(status),
            stable_hash=status.stable_rs,
            current_hash=status.current_pod_hash,
            stable_image=images.get(status.stable_rs or ""),
            current_image=_image(self.rollout.spec.template),
            replicas=self.rollout.spec.replicas_or_default(),
            ready_replicas=sum(r.ready for r in revisions),
            step_list=steps_of(wire_spec),
            revisions=revisions,
            analysis_runs=runs,
            experiments=[
                AnalysisRunView(name=n, phase=s.phase.value, message=s.message) for n, s in experiments.items()
            ],
            events=list(reversed(self.events)),
            weight_history=self.weights,
            spec=wire_spec,
            status=status.model_dump(by_alias=True, mode="json", exclude_none=True),
        )
        return with_roles(view)

    # --- user actions ----------------------------------------------------------------------------------------

    def act(self, action: Action, args: Mapping[str, Any]) -> str:
        status, version = self.engine.store.load(self.key)
        try:
            if action in (Action.PROMOTE, Action.PROMOTE_FULL):
                self.rollout, status = commands.promote(self.rollout, status, full=action == Action.PROMOTE_FULL)
            elif action == Action.ABORT:
                status = commands.abort(status)
            elif action == Action.RETRY:
                status = commands.retry(status)
            elif action == Action.UNDO:
                self.rollout = commands.undo(self.rollout, self._undo_template(args))
        except commands.ControlError as refused:
            raise ActionRefusedError(str(refused)) from None
        self.engine.store.save(self.key, status, version)
        return f"{action.value} recorded for {self.key}"

    def _undo_template(self, args: Mapping[str, Any]) -> dict[str, Any]:
        revisions = sorted(self.platform.revisions(self.rollout).values(), key=lambda r: r.number)
        current = self.status().current_pod_hash
        wanted = args.get("toRevision")
        if wanted is not None:
            chosen = [r for r in revisions if str(r.number) == str(wanted)]
            if not chosen:
                known = ", ".join(str(r.number) for r in revisions)
                raise commands.ControlError(f"no revision {wanted} (known: {known})")
        else:
            chosen = [r for r in revisions if r.hash != current][-1:]
            if not chosen:
                raise commands.ControlError("no earlier revision to go back to")
        template = self.platform.template_of(self.key, chosen[0].hash)
        if template is None:
            raise commands.ControlError(f"revision {chosen[0].number} has no template")
        return dict(template)


class SimSource:
    """`headway.dashboard.source.RolloutSource` over demo rollouts in virtual time.

    ``speed`` virtual seconds pass per real second once `start` runs the clock; tests may call `advance`.
    """

    def __init__(
        self,
        demos: Sequence[DemoRollout],
        *,
        speed: float = 10.0,
        tick_seconds: float = 0.2,
        start: datetime | None = None,
    ) -> None:
        now = start or datetime.now(UTC).replace(microsecond=0)
        self.now = now
        self.speed = speed
        self.tick_seconds = tick_seconds
        self._live = {rollout_key(d.rollout): _Live(d, now) for d in demos}
        self.now = max([now, *(live.now for live in self._live.values())])  # after each first deploy settled
        for live in self._live.values():
            live.step_to(self.now)  # the first pass of the update: the page opens on a rollout in progress
        self._subscribers: list[asyncio.Queue[ChangeEvent]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._clock(), name="headway-demo-clock")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            self.advance(self.tick_seconds * self.speed)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward, running the passes that fall due, and tell subscribers what changed."""
        self.now += timedelta(seconds=seconds)
        for key, live in self._live.items():
            before = live.view().summary()
            events = live.step_to(self.now)
            for event in events:
                self._publish(ChangeEvent(rollout=key, reason=event.reason, message=event.message, at=self.now))
            if not events and live.view().summary() != before:
                self._publish(ChangeEvent(rollout=key, at=self.now))

    def _publish(self, change: ChangeEvent) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    def _get(self, name: str, namespace: str) -> _Live:
        live = self._live.get(f"{namespace}/{name}")
        if live is None:
            known = ", ".join(sorted(self._live))
            raise RolloutNotFoundError(f"no rollout named {name} in namespace {namespace} (known: {known})")
        return live

    # --- RolloutSource ---------------------------------------------------------------------------------------

    async def list_rollouts(self) -> list[RolloutView]:
        return [live.view().summary() for live in self._live.values()]

    async def get_rollout(self, name: str, namespace: str) -> RolloutView:
        return self._get(name, namespace).view()

    async def act(self, name: str, namespace: str, action: Action, args: Mapping[str, Any]) -> ActionResult:
        live = self._get(name, namespace)
        message = live.act(action, args)
        events = live.step_to(self.now)  # act now, like a watch would
        key = live.key
        self._publish(ChangeEvent(rollout=key, reason=f"User{action.value.title().replace('-', '')}", at=self.now))
        for event in events:
            self._publish(ChangeEvent(rollout=key, reason=event.reason, message=event.message, at=self.now))
        return ActionResult(ok=True, message=message)

    async def subscribe(self) -> AsyncIterator[ChangeEvent]:
        queue: asyncio.Queue[ChangeEvent] = asyncio.Queue(maxsize=1000)
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)


# --- demo content ------------------------------------------------------------------------------------------------


def _rollout(name: str, namespace: str, image: str, steps: list[dict[str, Any]], **canary: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": image}]},
                },
                "strategy": {
                    "canary": {
                        "canaryService": f"{name}-canary",
                        "stableService": f"{name}-stable",
                        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": name}}},
                        "steps": steps,
                        **canary,
                    }
                },
            },
        }
    )


def demo_rollouts() -> list[DemoRollout]:
    """Three stories: one that keeps promoting itself, one waiting for a person, one whose canary is bad."""
    background = {"startingStep": 1, "templates": [{"templateName": "error-rate"}]}
    return [
        DemoRollout(
            _rollout(
                "checkout",
                "shop",
                "ghcr.io/example/checkout:2.0.0",
                [
                    {"setWeight": 10},
                    {"pause": {"duration": "30s"}},
                    {"setWeight": 30},
                    {"pause": {"duration": "30s"}},
                    {"setWeight": 60},
                    {"pause": {"duration": "30s"}},
                    {"setWeight": 100},
                ],
                analysis=background,
            )
        ),
        DemoRollout(
            _rollout(
                "payments",
                "shop",
                "ghcr.io/example/payments:1.4.0",
                [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "30s"}}],
            ),
            loop=False,
        ),
        DemoRollout(
            _rollout(
                "search",
                "web",
                "ghcr.io/example/search:3.1.0",
                [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "error-rate"}]}}, {"setWeight": 50}],
            ),
            scenario=scenarios.scenario("bad"),
        ),
    ]


# --- helpers -----------------------------------------------------------------------------------------------------


def _set_weight(status: RolloutStatus) -> int:
    weights = status.canary.weights
    return weights.canary.weight if weights is not None else 0


def _image(template: Mapping[str, Any] | None) -> str | None:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    image = containers[0].get("image") if containers else None
    return str(image) if image is not None else None


def _next_image(rollout: Rollout) -> str:
    return bump_image(_image(rollout.spec.template) or "app:1.0.0")


def _next_image_of(rollout: Rollout) -> str:
    return _image(rollout.spec.template) or "?"


def _evidence(result: judging.JudgeResult | None, history: list[JudgePoint]) -> JudgeEvidence | None:
    if result is None or result.ratio is None:
        return None
    return JudgeEvidence(
        ratio=result.ratio,
        lower=result.lower,
        upper=result.upper,
        p_value=result.p_value,
        e_value=result.e_value,
        tolerated_ratio=JUDGE.tolerated_ratio,
        verdict=result.explanation,
        canary_requests=result.canary_requests,
        stable_requests=result.stable_requests,
        history=history[-HISTORY:],
    )
