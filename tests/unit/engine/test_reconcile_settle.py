"""The pass's last look: after acting, the status saved counts what the actions left, in one write."""

from __future__ import annotations

from collections.abc import Mapping

from headway.core import actions as a
from headway.core.decision import Decision, Event, EventType
from headway.core.errors import TemporaryError
from headway.core.observation import Observation, RevisionState
from headway.platforms.fake import FakePlatform
from headway.spec.rollout import Rollout
from headway.spec.status import Phase, RolloutStatus
from tests.unit.engine.test_reconcile import KEY, Scripted, World


def retire_old(rollout: Rollout, status: RolloutStatus, observation: Observation) -> Decision:
    """Scale revision ``old`` to zero; report the replicas observed, as the core does."""
    replicas = sum(revision.replicas for revision in observation.revisions.values())
    report = status.model_copy(update={"phase": Phase.HEALTHY, "replicas": replicas})
    old = observation.revisions.get("old")
    if old is not None and old.replicas > 0:
        done = Event(EventType.NORMAL, "ScaledDown", "old revision scaled to zero")
        return Decision(status=report, actions=(a.ScaleRevision(hash="old", replicas=0),), events=(done,))
    return Decision(status=report)


def test_the_status_saved_counts_the_replicas_the_actions_left_in_one_write() -> None:
    world = World()
    world.platform.create_revision(world.rollout, "new", 2, 2)
    world.platform.create_revision(world.rollout, "old", 1, 2)

    decision = world.reconcile(retire_old)

    assert [status.replicas for status in world.store.saves(KEY)] == [2], "4 before the scale-down; 2 after"
    assert decision.actions == (a.ScaleRevision(hash="old", replicas=0),)
    assert [event.reason for event in decision.events] == ["ScaledDown"]
    world.reconcile(retire_old)  # the next pass (the scale-down's echo) finds nothing new to write
    assert len(world.store.saves(KEY)) == 1


def test_a_last_look_that_still_wants_actions_leaves_them_and_its_status_to_the_next_pass() -> None:
    world = World()
    decided = RolloutStatus(phase=Phase.PROGRESSING, current_step_index=1)
    scale = a.CreateRevision(hash="new", number=2, replicas=1)
    decide = Scripted(Decision(status=decided, actions=(scale,), requeue_after=30))

    decision = world.reconcile(decide)

    assert world.platform.methods_called() == ["create_revision"], "acted once, not again on the last look"
    assert len(decide.seen) == 2
    assert world.store.saves(KEY) == [decided]
    assert decision.requeue_after == 30


class FailingSecondLook(FakePlatform):
    """Reading the revisions works once, then the API server is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
        self.reads += 1
        if self.reads > 1:
            raise TemporaryError("connection refused", delay=5)
        return super().revisions(rollout)


def test_an_unreadable_world_on_the_last_look_keeps_the_acting_rounds_status() -> None:
    world = World(platform=FailingSecondLook())
    world.platform.create_revision(world.rollout, "old", 1, 2)

    decision = world.reconcile(retire_old)

    assert [status.replicas for status in world.store.saves(KEY)] == [2]
    assert decision.actions == (a.ScaleRevision(hash="old", replicas=0),)
    assert [event.reason for event in decision.events] == ["ScaledDown"], "not a failed pass: it acted and saved"


def test_a_pass_that_did_nothing_looks_once() -> None:
    world = World()
    decide = Scripted(Decision(status=RolloutStatus(phase=Phase.HEALTHY)))

    world.reconcile(decide)

    assert len(decide.seen) == 1
