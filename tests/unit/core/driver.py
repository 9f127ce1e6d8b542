"""A tiny world for driving `decide` in core tests: revisions that become available after a delay, scripted runs.

This is deliberately smaller than the simulator (`headway.sim`): core tests must not depend on the shell, and
every rule here is visible in a few lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from headway.core import actions as a
from headway.core.decide import decide
from headway.core.decision import Decision
from headway.core.hashing import pod_template_hash
from headway.core.observation import GateState, Observation, RevisionState, RouterState, RunState
from headway.spec.rollout import Rollout
from headway.spec.status import Phase, RolloutStatus, RunPhase

T0 = datetime(2026, 1, 1, tzinfo=UTC)

RunScript = Callable[[str, float], RunPhase]
"""(run name, seconds since it started) → phase."""


def rollout(strategy: dict[str, Any], *, image: str = "app:1", replicas: int = 10, **spec: Any) -> Rollout:
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": strategy,
            **spec,
        },
    }
    return Rollout.model_validate(body)


def with_image(r: Rollout, image: str) -> Rollout:
    template = {"spec": {"containers": [{"name": "web", "image": image}]}}
    return r.model_copy(update={"spec": r.spec.model_copy(update={"template": template})})


def passing(_name: str, age: float) -> RunPhase:
    return RunPhase.SUCCESSFUL if age >= 60 else RunPhase.RUNNING


@dataclass
class World:
    rollout: Rollout
    now: datetime = T0
    status: RolloutStatus = field(default_factory=RolloutStatus)
    revisions: dict[str, RevisionState] = field(default_factory=dict)
    ready_at: dict[str, list[datetime]] = field(default_factory=dict)
    startup: float = 10.0
    broken: set[str] = field(default_factory=set)
    runs: dict[str, datetime] = field(default_factory=dict)
    terminated: set[str] = field(default_factory=set)
    script: RunScript = passing
    weight: int | None = None
    services: dict[str, str] = field(default_factory=dict)
    gate_answers: dict[str, bool] = field(default_factory=dict)
    """Gate name → what its webhook answers (absent: no answer yet)."""
    gates_asked: dict[str, datetime] = field(default_factory=dict)
    log: list[a.Action] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def observe(self) -> Observation:
        revisions = {}
        for h, r in self.revisions.items():
            ready = sum(1 for t in self.ready_at.get(h, []) if t <= self.now) if h not in self.broken else 0
            revisions[h] = replace(r, ready=ready, available=ready)
        runs = {}
        for name, started in self.runs.items():
            phase = (
                RunPhase.FAILED if name in self.terminated else self.script(name, (self.now - started).total_seconds())
            )
            runs[name] = RunState(name=name, phase=phase)
        gates = {
            key: GateState(
                key=key,
                passed=self.gate_answers.get(key.split("/")[0], False),
                asked_at=asked,
                answered=key.split("/")[0] in self.gate_answers,
            )
            for key, asked in self.gates_asked.items()
        }
        return Observation(
            now=self.now, revisions=revisions, analysis_runs=runs, router=RouterState(self.weight), gates=gates
        )

    def apply(self, action: a.Action) -> None:
        self.log.append(action)
        if isinstance(action, a.CreateRevision):
            self.revisions[action.hash] = RevisionState(hash=action.hash, number=action.number, replicas=0)
            self._scale(action.hash, action.replicas)
        elif isinstance(action, a.ScaleRevision):
            self._scale(action.hash, action.replicas)
        elif isinstance(action, a.DeleteRevision):
            self.revisions.pop(action.hash, None)
        elif isinstance(action, a.SetWeight):
            self.weight = action.canary_weight
        elif isinstance(action, a.SwitchService):
            self.services[action.service] = action.hash
        elif isinstance(action, a.StartAnalysisRun):
            self.runs[action.name] = self.now
        elif isinstance(action, a.TerminateAnalysisRun):
            self.terminated.add(action.name)
        elif isinstance(action, a.CallGate):
            self.gates_asked[action.key] = self.now

    def _scale(self, pod_hash: str, replicas: int) -> None:
        current = self.ready_at.setdefault(pod_hash, [])
        if replicas < len(current):
            del current[replicas:]
        else:
            current.extend([self.now + timedelta(seconds=self.startup)] * (replicas - len(current)))
        self.revisions[pod_hash] = replace(self.revisions[pod_hash], replicas=replicas)

    def step(self) -> Decision:
        decision = decide(self.rollout, self.status, self.observe())
        for action in decision.actions:
            self.apply(action)
        self.status = decision.status
        self.decisions.append(decision)
        return decision

    def run(
        self,
        *,
        until: Callable[[World], bool],
        limit: float = 7200,
        tick: float = 5.0,
        each: Callable[[World], None] | None = None,
    ) -> World:
        """Step until ``until`` holds (raise after ``limit`` virtual seconds), calling ``each`` after every pass."""
        end = self.now + timedelta(seconds=limit)
        while self.now < end:
            decision = self.step()
            if each is not None:
                each(self)
            if until(self):
                return self
            wait = tick if decision.requeue_after is None else min(tick, decision.requeue_after)
            self.now += timedelta(seconds=wait)
        raise AssertionError(f"not done after {limit}s: {self.status.phase} {self.status.message}")

    def deploy(self, image: str) -> World:
        self.rollout = with_image(self.rollout, image)
        return self

    @property
    def new_hash(self) -> str:
        return pod_template_hash(self.rollout.spec.template)

    def replicas(self, pod_hash: str | None) -> int:
        return self.revisions[pod_hash].replicas if pod_hash in self.revisions else 0


def healthy(w: World) -> bool:
    return w.status.phase == Phase.HEALTHY and w.status.stable_rs == w.new_hash


def settled(w: World) -> bool:
    """Healthy on the new revision with every other revision scaled to zero."""
    return healthy(w) and all(r.replicas == 0 for h, r in w.revisions.items() if h != w.new_hash)


def started(r: Rollout, **options: Any) -> World:
    """A world where the first revision is deployed and healthy."""
    w = World(rollout=r, **options)
    return w.run(until=healthy)
