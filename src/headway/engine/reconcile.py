"""One reconcile pass, the imperative shell around the pure core: load → observe → decide → act → save once.

Every runtime calls this: the Kubernetes controller from its work queue, the embedded runtime from an asyncio
timer, the simulator in virtual time. It owns no timers and no threads; it returns when to look again
(``requeue_after``) and the caller keeps the clock. Time is an argument, never read here.

Status is saved once, at the end, with the version read at the start. When the last round acted, the world is
observed once more and decided on without acting (`_settle`), so the status saved counts what the actions left
(replicas, weights), not what they found: otherwise their echo would make the next pass write again. On a
conflict the decision is dropped and the next pass re-reads (a user's ``promote`` written meanwhile must win over
a decision made without it). When an action fails, the status is not saved either: it would describe a world the
actions did not produce (a step recorded as reached whose weight was never set); the next pass re-decides from
what it then observes, and since actions are idempotent, redoing the ones that succeeded is harmless. One thing
is kept from such a pass: a Healthy rollout it saw was not Healthy (the data plane broken, its repair failed) is
saved as what the pass saw, never left Healthy (`_health_seen`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from headway.core import readiness
from headway.core.actions import Action
from headway.core.dataplane import expected_routing
from headway.core.decide import decide as core_decide
from headway.core.decision import Decision, Event, EventType
from headway.core.errors import AdapterError
from headway.core.observation import Observation, RouterState
from headway.engine.apply import Failure, apply_actions
from headway.engine.gates import GateBackend
from headway.engine.runs import RunBackend
from headway.platforms.base import Platform
from headway.routers.base import TrafficRouter, Verification
from headway.spec.rollout import Rollout, rollout_key
from headway.spec.status import Condition, Phase, RolloutStatus
from headway.stores.base import ConflictError, StatusStore

Decide = Callable[[Rollout, RolloutStatus, Observation], Decision]
"""The shape of `headway.core.decide.decide`; tests pass hand-made ones."""

OBSERVE_FAILED = "ObserveFailed"
ACTION_FAILED = "ActionFailed"
STATUS_CONFLICT = "StatusConflict"
ROUTER_UNREADABLE = "RouterUnreadable"
MAX_ROUNDS = 4
"""Decide-act rounds in one pass while each round makes progress the next observation can see."""


@dataclass(frozen=True)
class PassResult:
    """Everything one pass did, for runtimes and tests that need more than the Decision."""

    decision: Decision
    """What the core decided (for an observe failure: the loaded status, no actions)."""
    version: str
    """The status version the pass read."""
    saved_version: str | None = None
    """The version written; None when nothing was saved (unchanged, failed, conflict)."""
    applied: tuple[Action, ...] = ()
    failure: Failure | None = None
    conflict: bool = False
    warnings: tuple[Event, ...] = ()
    """Events the shell adds about itself (failures, conflicts, an unreadable router)."""

    @property
    def requeue_after(self) -> float | None:
        """When to look again: now after a conflict, after the retry delay of a failure, else as decided."""
        if self.conflict:
            return 0.0
        candidates = [self.decision.requeue_after]
        if self.failure is not None:
            candidates.append(self.failure.retry_after)
        known = [value for value in candidates if value is not None]
        return min(known) if known else None

    def outcome(self) -> Decision:
        """The decision as the caller should act on it: shell warnings appended, requeue as above."""
        return replace(
            self.decision,
            events=self.decision.events + self.warnings,
            requeue_after=self.requeue_after,
        )


def observe(
    rollout: Rollout,
    *,
    now: datetime,
    platform: Platform,
    router: TrafficRouter | None,
    runs: RunBackend,
    gates: GateBackend | None = None,
    status: RolloutStatus | None = None,
) -> tuple[Observation, tuple[Event, ...]]:
    """Gather the facts of one pass. Platform or run errors propagate (nothing to decide on without them);
    a router that cannot be read is data: the weight is unknown and not verified, so the core waits. That holds
    for any exception the router raises, not only `AdapterError`: a live object the adapter cannot parse (a
    hand-edited annotation) must hold the rollout back with a Warning, never crash the pass and leave the last
    status (Healthy) standing.

    The router is read back every pass, against the routing ``status`` says was set
    (`headway.core.dataplane.expected_routing`), so a change made behind Headway's back shows up as drift."""
    revisions = platform.revisions(rollout)
    analysis_runs, experiments = runs.observe(rollout)
    router_state = RouterState()
    warnings: tuple[Event, ...] = ()
    if router is not None and _reads_router(rollout):
        expected = expected_routing(rollout, status) if status is not None else None
        try:
            router_state = router.read_state(rollout, expected)
        except Exception as error:  # any failure, an adapter's bug included: an unverified state, never a skip  # noqa: BLE001 - fail closed: any failure becomes an error result
            router_state = RouterState(canary_weight=None, verified=Verification.NOT_VERIFIED.as_bool())
            warnings = (Event(EventType.WARNING, ROUTER_UNREADABLE, _unreadable(error)),)
    observation = Observation(
        now=now,
        revisions=revisions,
        analysis_runs=analysis_runs,
        experiments=experiments,
        router=router_state,
        gates=gates.observe(rollout) if gates is not None else {},
    )
    return observation, warnings


def run_pass(
    rollout: Rollout,
    *,
    now: datetime,
    platform: Platform,
    router: TrafficRouter | None,
    runs: RunBackend,
    store: StatusStore,
    key: str | None = None,
    decide: Decide = core_decide,
    gates: GateBackend | None = None,
) -> PassResult:
    """One pass, reported in full. ``key`` defaults to ``namespace/name``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (UTC), got {now.isoformat()}")
    key = key or rollout_key(rollout)
    status, version = store.load(key)
    current = status
    applied_all: list[Action] = []
    events: list[Event] = []
    warnings: tuple[Event, ...] = ()
    decision = Decision(status=status)
    acted = False  # whether the last round applied actions: its status was decided from the world before them
    for round_ in range(MAX_ROUNDS):
        try:
            observation, seen = observe(
                rollout, now=now, platform=platform, router=router, runs=runs, gates=gates, status=current
            )
        except AdapterError as error:
            if round_ == 0:
                failure = Failure(action=None, error=error)
                event = Event(EventType.WARNING, OBSERVE_FAILED, failure.describe())
                return PassResult(decision=decision, version=version, failure=failure, warnings=(event,))
            acted = False
            break  # keep what the earlier rounds decided and did; the next pass observes again
        warnings = (*warnings, *seen)
        decision = decide(rollout, current, observation)
        applied = apply_actions(
            rollout, decision.actions, platform=platform, router=router, runs=runs, gates=gates, now=now
        )
        applied_all.extend(applied.done)
        events.extend(decision.events)
        if applied.failure is not None:
            event = Event(EventType.WARNING, ACTION_FAILED, applied.failure.describe())
            current = _health_seen(current, decision.status)
            merged = replace(decision, status=current, actions=tuple(applied_all), events=tuple(events))
            if current != status:
                _save_quietly(store, key, current, version)
            return PassResult(
                decision=merged,
                version=version,
                applied=tuple(applied_all),
                failure=applied.failure,
                warnings=(*warnings, event),
            )
        current = decision.status
        acted = bool(applied.done)
        # Progress that the next observation can confirm at once (a weight set, a step passed): decide again
        # before writing, so one pass writes status once instead of once per small move.
        if decision.requeue_after != 0.0 or not decision.actions:
            break
    if acted:
        settled = _settle(
            rollout, current, now=now, platform=platform, router=router, runs=runs, gates=gates, decide=decide
        )
        if settled is not None:
            decision, seen = settled
            current = decision.status
            warnings = (*warnings, *seen)
            events.extend(decision.events)
    decision = replace(decision, status=current, actions=tuple(applied_all), events=tuple(events))
    if current == status:
        return PassResult(decision=decision, version=version, applied=tuple(applied_all), warnings=warnings)
    try:
        saved = store.save(key, current, version)
    except ConflictError as error:
        event = Event(EventType.NORMAL, STATUS_CONFLICT, f"{error}; deciding again from the new status")
        return PassResult(
            decision=decision, version=version, applied=tuple(applied_all), conflict=True, warnings=(*warnings, event)
        )
    return PassResult(
        decision=decision, version=version, saved_version=saved, applied=tuple(applied_all), warnings=warnings
    )


def _settle(
    rollout: Rollout,
    status: RolloutStatus,
    *,
    now: datetime,
    platform: Platform,
    router: TrafficRouter | None,
    runs: RunBackend,
    gates: GateBackend | None,
    decide: Decide = core_decide,
) -> tuple[Decision, tuple[Event, ...]] | None:
    """The decision on the world as the last round's actions left it, when it asks for nothing more.

    A round's status counts the replicas and weights it observed before acting (a ReplicaSet just scaled to 0
    still counted): saved as is, the echo of those actions would bring a second write in the next pass. This
    is exactly the decision that next pass would make, without its load, so its status is as sound; one that
    still wants actions is left to that pass (None), as is a world that cannot be read now."""
    try:
        observation, seen = observe(
            rollout, now=now, platform=platform, router=router, runs=runs, gates=gates, status=status
        )
    except AdapterError:
        return None
    after = decide(rollout, status, observation)
    return None if after.actions else (after, seen)


def _health_seen(kept: RolloutStatus, decided: RolloutStatus) -> RolloutStatus:
    """The status a failed pass keeps (the one it started from), but no longer Healthy when the pass saw otherwise.

    Fail closed: a pass that finds the data plane broken (the stable revision unrouted, drifted routing) and then
    fails to repair it must not leave the rollout listed as Healthy until some later pass succeeds; only the
    phase, its message and the conditions that say whether it is healthy (Argo's ``Healthy``, kstatus' ``Ready``,
    ``Reconciling`` and ``Stalled``, which Flux and ``kubectl wait`` read) are taken from the decision, nothing it
    did not achieve.
    """
    if kept.phase != Phase.HEALTHY or decided.phase in (None, Phase.HEALTHY):
        return kept
    health = ("Healthy", *readiness.KINDS)
    conditions = [c for c in kept.conditions if c.type not in health]
    conditions += [c for c in decided.conditions if c.type in health]
    return kept.model_copy(
        update={"phase": decided.phase, "message": decided.message, "conditions": sorted(conditions, key=_type)}
    )


def _type(condition: Condition) -> str:
    return condition.type


def _save_quietly(store: StatusStore, key: str, status: RolloutStatus, version: str) -> None:
    """Keep what earlier rounds of a failed pass decided; a conflict means someone else wrote: theirs stands."""
    with contextlib.suppress(ConflictError):
        store.save(key, status, version)


def update_status(
    store: StatusStore,
    key: str,
    change: Callable[[RolloutStatus], RolloutStatus],
    *,
    attempts: int = 3,
) -> RolloutStatus:
    """Apply a user command (``promote``, ``abort``, ``retry`` from `headway.core.commands`) to the saved status.

    Read-modify-write with the version read, retried on conflict: the command is re-applied to the newer status
    rather than overwriting it.
    """
    for attempt in range(attempts):
        status, version = store.load(key)
        changed = change(status)
        try:
            store.save(key, changed, version)
        except ConflictError:
            if attempt == attempts - 1:
                raise
            continue
        return changed
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Engine:
    """The adapters of one mode, wired once (by ``bootstrap``), reconciling any rollout on demand."""

    platform: Platform
    router: TrafficRouter | None
    runs: RunBackend
    store: StatusStore
    decide: Decide = core_decide
    gates: GateBackend | None = None

    def run_pass(self, rollout: Rollout, *, now: datetime, key: str | None = None) -> PassResult:
        return run_pass(
            rollout,
            now=now,
            platform=self.platform,
            router=self.router,
            runs=self.runs,
            store=self.store,
            key=key,
            decide=self.decide,
            gates=self.gates,
        )

    def update_status(self, key: str, change: Callable[[RolloutStatus], RolloutStatus]) -> RolloutStatus:
        return update_status(self.store, key, change)


def _unreadable(error: Exception) -> str:
    """The RouterUnreadable message; an unexpected exception names its type (an adapter bug to report)."""
    if isinstance(error, AdapterError):
        return f"reading the traffic weight failed: {error}"
    return f"reading the traffic weight failed with an unexpected {type(error).__name__}: {error}"


def _reads_router(rollout: Rollout) -> bool:
    """A traffic-routed canary, or a blue/green rollout in a mode that routes it with a router (embedded)."""
    canary = rollout.spec.strategy.canary
    return rollout.spec.strategy.blue_green is not None or (canary is not None and canary.traffic_routing is not None)
