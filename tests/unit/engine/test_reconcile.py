"""One pass of the shell with hand-made decisions: what it observes, applies and saves, and how it fails."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from headway.core import actions as a
from headway.core.decision import Decision, Event, EventType
from headway.core.errors import TemporaryError
from headway.core.observation import Observation, RevisionState
from headway.engine.reconcile import (
    ACTION_FAILED,
    OBSERVE_FAILED,
    ROUTER_UNREADABLE,
    STATUS_CONFLICT,
    Decide,
    Engine,
    run_pass,
    update_status,
)
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.fake import FakeRouter
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import Rollout
from headway.spec.status import Phase, RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError
from headway.stores.memory import MemoryStore
from tests.scenarios.harness import canary

KEY = "default/web"
NOW = EPOCH + timedelta(minutes=3)


@dataclass
class Scripted:
    """A decide function that records what it was given and answers with a fixed decision."""

    decision: Decision
    seen: list[tuple[RolloutStatus, Observation]] = field(default_factory=list)
    before_return: Callable[[], None] | None = None

    def __call__(self, rollout: Rollout, status: RolloutStatus, observation: Observation) -> Decision:
        self.seen.append((status, observation))
        if self.before_return is not None:
            self.before_return()
        return self.decision


@dataclass
class World:
    rollout: Rollout = field(default_factory=lambda: canary(routed=True))
    platform: FakePlatform = field(default_factory=FakePlatform)
    router: FakeRouter = field(default_factory=FakeRouter)
    runs: ScriptedRuns = field(default_factory=ScriptedRuns)
    store: MemoryStore = field(default_factory=MemoryStore)

    def reconcile(self, decide: Decide, *, now: datetime = NOW) -> Decision:
        """One pass's outcome: its decision with the shell's warnings appended."""
        return run_pass(
            self.rollout,
            now=now,
            platform=self.platform,
            router=self.router,
            runs=self.runs,
            store=self.store,
            key=KEY,
            decide=decide,
        ).outcome()

    def engine(self, decide: Decide) -> Engine:
        return Engine(platform=self.platform, router=self.router, runs=self.runs, store=self.store, decide=decide)


PROGRESSING = RolloutStatus(phase=Phase.PROGRESSING, current_step_index=1)


def test_the_decided_status_is_saved_once_with_the_version_read() -> None:
    world = World()
    decide = Scripted(Decision(status=PROGRESSING, requeue_after=30))

    decision = world.reconcile(decide)

    assert world.store.saves(KEY) == [PROGRESSING]
    assert decision.requeue_after == 30
    assert decide.seen[0][0] == RolloutStatus()


def test_an_unchanged_status_is_not_written() -> None:
    world = World()
    world.store.save(KEY, PROGRESSING, NO_VERSION)

    world.reconcile(Scripted(Decision(status=PROGRESSING)))

    assert len(world.store.saves(KEY)) == 1


def test_the_observation_carries_now_revisions_runs_and_router() -> None:
    world = World()
    world.platform.create_revision(world.rollout, "abc", 1, 2)
    world.router.set_weight(world.rollout, 20, "abc", "old")
    decide = Scripted(Decision(status=RolloutStatus()))

    world.reconcile(decide)

    observation = decide.seen[0][1]
    assert observation.now == NOW
    assert observation.revisions["abc"].replicas == 2
    assert observation.router.canary_weight == 20
    assert observation.router.verified is True


def test_a_rollout_without_traffic_routing_does_not_read_the_router() -> None:
    world = World(rollout=canary(routed=False))
    world.router.fail_next("read_weight", AssertionError("must not be called"))
    decide = Scripted(Decision(status=RolloutStatus()))

    world.reconcile(decide)

    assert decide.seen[0][1].router.canary_weight is None


def test_actions_are_applied_in_order_before_saving() -> None:
    world = World()
    actions = (
        a.CreateRevision(hash="new", number=2, replicas=1),
        a.SetWeight(canary_weight=5, canary_hash="new", stable_hash="old"),
    )

    world.reconcile(Scripted(Decision(status=PROGRESSING, actions=actions)))

    assert world.platform.methods_called() == ["create_revision"]
    assert world.router.route(world.rollout).canary_weight == 5
    assert world.store.saves(KEY) == [PROGRESSING]


def test_a_failed_action_saves_nothing_and_retries_after_its_delay() -> None:
    world = World()
    world.router.fail_next("set_weight", TemporaryError("router busy", delay=4))
    actions = (
        a.CreateRevision(hash="new", number=2, replicas=1),
        a.SetWeight(canary_weight=5, canary_hash="new", stable_hash="old"),
    )
    decided = Event(EventType.NORMAL, "RolloutStepCompleted", "step 1")

    decision = world.reconcile(
        Scripted(Decision(status=PROGRESSING, actions=actions, events=(decided,), requeue_after=60))
    )

    assert world.store.saves(KEY) == []
    assert decision.requeue_after == 4
    assert [event.reason for event in decision.events] == ["RolloutStepCompleted", ACTION_FAILED]
    assert decision.events[-1].type is EventType.WARNING


def test_a_conflicting_write_is_dropped_and_the_next_pass_comes_at_once() -> None:
    world = World()
    promoted = RolloutStatus(message="promoted by a user")

    def user_promotes_meanwhile() -> None:
        world.store.save(KEY, promoted, NO_VERSION)

    decide = Scripted(Decision(status=PROGRESSING, requeue_after=30), before_return=user_promotes_meanwhile)

    decision = world.reconcile(decide)

    assert world.store.load(KEY)[0] == promoted
    assert decision.requeue_after == 0
    assert decision.events[-1].reason == STATUS_CONFLICT


def test_a_failed_observation_decides_nothing() -> None:
    world = World()
    world.store.save(KEY, PROGRESSING, NO_VERSION)

    class Unreachable(FakePlatform):
        def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
            raise TemporaryError("api server unavailable", delay=15)

    world.platform = Unreachable()
    decide = Scripted(Decision(status=RolloutStatus()))

    decision = world.reconcile(decide)

    assert decide.seen == []
    assert decision.status == PROGRESSING
    assert decision.requeue_after == 15
    assert decision.events[-1].reason == OBSERVE_FAILED


def test_an_unreadable_router_is_data_not_verified() -> None:
    world = World()
    world.router.fail_next("read_weight", TemporaryError("timeout"))
    decide = Scripted(Decision(status=RolloutStatus()))

    decision = world.reconcile(decide)

    assert decide.seen[0][1].router.verified is False
    assert decide.seen[0][1].router.canary_weight is None
    assert [event.reason for event in decision.events] == [ROUTER_UNREADABLE]


@pytest.mark.parametrize("error", [ValueError("invalid literal for int(): '100%'"), KeyError("weight")])
def test_any_exception_reading_the_router_is_unreadable_not_a_crash(error: Exception) -> None:
    """An adapter's bug on a hostile live object (not an AdapterError) must hold the rollout back with a
    Warning naming it, never escape the pass and leave the last saved status (Healthy) standing."""
    world = World()
    world.router.fail_next("read_weight", error)
    decide = Scripted(Decision(status=RolloutStatus()))

    decision = world.reconcile(decide)

    assert decide.seen[0][1].router.verified is False
    assert decide.seen[0][1].router.canary_weight is None
    (event,) = decision.events
    assert event.reason == ROUTER_UNREADABLE
    assert event.type is EventType.WARNING
    assert type(error).__name__ in event.message


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        World().reconcile(Scripted(Decision(status=RolloutStatus())), now=NOW.replace(tzinfo=None))


def test_the_engine_reports_the_whole_pass() -> None:
    world = World()
    create = a.CreateRevision(hash="new", number=1, replicas=1)

    result = world.engine(Scripted(Decision(status=PROGRESSING, actions=(create,)))).run_pass(world.rollout, now=NOW)

    assert result.applied == (create,)
    assert result.version == NO_VERSION
    assert result.saved_version == world.store.load(KEY)[1]
    assert result.failure is None and not result.conflict


def test_the_engine_runs_the_real_core_by_default() -> None:
    world = World(rollout=canary())
    engine = Engine(platform=world.platform, router=None, runs=world.runs, store=world.store)

    engine.run_pass(world.rollout, now=NOW)

    (revision,) = world.platform.revisions(world.rollout).values()
    assert revision.replicas == world.rollout.spec.replicas
    assert world.store.load(KEY)[0].stable_rs == revision.hash


def test_a_user_command_is_reapplied_to_a_newer_status_on_conflict() -> None:
    store = MemoryStore()
    store.save(KEY, PROGRESSING, NO_VERSION)
    calls = 0

    def abort(status: RolloutStatus) -> RolloutStatus:
        nonlocal calls
        calls += 1
        if calls == 1:  # the engine writes between our read and our write
            version = store.load(KEY)[1]
            store.save(KEY, status.model_copy(update={"message": "engine wrote"}), version)
        return status.model_copy(update={"abort": True})

    update_status(store, KEY, abort)

    saved = store.load(KEY)[0]
    assert calls == 2
    assert saved.abort and saved.message == "engine wrote"


def test_a_user_command_gives_up_after_repeated_conflicts() -> None:
    store = MemoryStore()

    def always_raced(status: RolloutStatus) -> RolloutStatus:
        store.save(KEY, status, store.load(KEY)[1])
        return status

    with pytest.raises(ConflictError):
        update_status(store, KEY, always_raced, attempts=2)
