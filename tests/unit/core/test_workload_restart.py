"""``spec.restartAt``: the core replaces pods one at a time, only at full availability, and records the end."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from headway.core import actions as a
from headway.core import commands
from headway.core.observation import Observation
from tests.unit.core.driver import World, healthy, rollout

REPLICAS = 4


@dataclass
class Pods(World):
    """The driver's world with pod creation times: `RestartRevision(before=…)` replaces the oldest older pod."""

    created: dict[str, list[datetime]] = field(default_factory=dict)
    drop_every_other_restart: bool = False
    _restarts_seen: int = 0

    def observe(self) -> Observation:
        observation = super().observe()
        revisions = {
            h: replace(r, oldest_pod_at=min(self.created.get(h) or [], default=None))
            for h, r in observation.revisions.items()
        }
        return replace(observation, revisions=revisions)

    def apply(self, action: a.Action) -> None:
        if isinstance(action, a.RestartRevision) and action.before is not None:
            self._restarts_seen += 1
            if self.drop_every_other_restart and self._restarts_seen % 2:
                self.log.append(action)
                return  # the pass stopped before this action reached the platform
            self.log.append(action)
            self._replace_oldest(action.hash, action.before)
            return
        super().apply(action)
        for pod_hash, ready in self.ready_at.items():
            times = self.created.setdefault(pod_hash, [])
            del times[len(ready) :]
            times.extend([self.now] * (len(ready) - len(times)))

    def _replace_oldest(self, pod_hash: str, before: datetime) -> None:
        times = self.created[pod_hash]
        old = [i for i, t in enumerate(times) if t < before]
        if old:
            i = min(old, key=lambda i: times[i])
            times[i] = self.now
            self.ready_at[pod_hash][i] = self.now + timedelta(seconds=self.startup)

    def unavailable(self) -> int:
        return sum(r.replicas - r.available for r in self.observe().revisions.values())

    def pods_older_than(self, when: datetime) -> int:
        return sum(1 for times in self.created.values() for t in times if t < when)


def started_pods(**options: object) -> Pods:
    w = Pods(rollout=rollout({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, replicas=REPLICAS))
    for key, value in options.items():
        setattr(w, key, value)
    w.run(until=healthy)
    w.now += timedelta(minutes=1)
    return w


def restarted(w: World) -> bool:
    return w.status.restarted_at is not None


def test_pods_are_replaced_one_at_a_time_and_restarted_at_is_written_at_the_end() -> None:
    w = started_pods()
    when = w.now
    w.rollout = commands.restart(w.rollout, when)
    worst: list[int] = []
    pending: list[int] = []

    def record(w: World) -> None:
        assert isinstance(w, Pods)
        worst.append(w.unavailable())
        if not restarted(w):
            pending.append(w.pods_older_than(when))

    w.run(until=restarted, each=record, tick=1.0)
    assert max(worst) <= 1  # never more than one pod away
    assert w.pods_older_than(when) == 0
    assert pending[0] == REPLICAS - 1 and sum(1 for n in pending if n > 0) >= REPLICAS - 1  # not written at the start
    assert w.status.restarted_at == when
    restarts = [x for x in w.log if isinstance(x, a.RestartRevision)]
    assert len(restarts) >= REPLICAS and all(x.before == when for x in restarts)
    events = [e for d in w.decisions for e in d.events if e.reason == "RolloutRestarted"]
    assert len(events) == 1


def test_a_restart_in_the_future_waits_for_its_time() -> None:
    w = started_pods()
    when = w.now + timedelta(minutes=5)
    w.rollout = commands.restart(w.rollout, when)
    decision = w.step()
    assert not [x for x in decision.actions if isinstance(x, a.RestartRevision)]
    assert decision.requeue_after is not None and decision.requeue_after <= 300
    w.now = when
    assert [x for x in w.step().actions if isinstance(x, a.RestartRevision)]


def test_nothing_is_replaced_while_a_pod_is_unavailable() -> None:
    w = started_pods()
    w.rollout = commands.restart(w.rollout, w.now)
    w.step()  # replaces the first pod: it is unavailable for `startup` seconds
    assert w.unavailable() == 1
    for _ in range(3):
        w.now += timedelta(seconds=1)
        assert not [x for x in w.step().actions if isinstance(x, a.RestartRevision)]


def test_a_pass_that_stopped_before_the_restart_action_is_made_good_by_the_next() -> None:
    w = started_pods(drop_every_other_restart=True)
    when = w.now
    w.rollout = commands.restart(w.rollout, when)
    w.run(until=restarted, tick=1.0)
    assert w.pods_older_than(when) == 0


def test_a_restart_already_done_is_not_redone() -> None:
    w = started_pods()
    w.rollout = commands.restart(w.rollout, w.now)
    w.run(until=restarted, tick=1.0)
    count = len([x for x in w.log if isinstance(x, a.RestartRevision)])
    w.now += timedelta(minutes=1)
    w.step()
    assert len([x for x in w.log if isinstance(x, a.RestartRevision)]) == count
