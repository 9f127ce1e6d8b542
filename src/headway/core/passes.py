"""One decision pass: the inputs, plus the status, actions, events and wake-up times it collects.

Strategies write into a `Pass` instead of returning tuples through every helper: the pass is created, filled and
turned into a `Decision` inside one call to `decide`, so nothing outside sees it change (argo's ``rolloutContext``
plays the same role with its ``newStatus`` and ``pauseContext``). Inputs are never mutated.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from headway.core.actions import Action
from headway.core.decision import Decision, Event, EventType
from headway.core.observation import Observation, RevisionState
from headway.spec.rollout import Rollout
from headway.spec.status import Condition, PauseCondition, PauseReason, RolloutStatus


class Pass:
    """Builder for one `Decision`; see the module docstring."""

    def __init__(self, rollout: Rollout, status: RolloutStatus, observation: Observation, new_hash: str) -> None:
        self.rollout = rollout
        self.spec = rollout.spec
        self.obs = observation
        self.now = observation.now
        self.new_hash = new_hash
        self.status = status
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.wakeups: list[datetime] = []
        self.waiting_on_replicas = False
        self.waiting_for = ""
        self.progressed = False
        self.keep: set[str] = {new_hash}
        self.repairs: list[Action] = []
        """Actions `headway.core.dataplane.verify` added to set drifted routing again (dropped when superseded)."""

    # --- status -------------------------------------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def update_canary(self, **changes: Any) -> None:
        self.update(canary=self.status.canary.model_copy(update=changes))

    def update_blue_green(self, **changes: Any) -> None:
        self.update(blue_green=self.status.blue_green.model_copy(update=changes))

    def set_condition(self, kind: str, status: bool, reason: str, message: str = "") -> None:
        """Set a condition; its transition time moves only when its truth value changes."""
        value = "True" if status else "False"
        old = self.status.condition(kind)
        transition = old.last_transition_time if old is not None and old.status == value else self.now
        if old is not None and old.status == value and old.reason == reason and old.message == message:
            return
        new = Condition(
            type=kind,
            status=value,
            reason=reason,
            message=message,
            last_update_time=self.now,
            last_transition_time=transition,
        )
        others = [c for c in self.status.conditions if c.type != kind]
        self.update(conditions=sorted([*others, new], key=lambda c: c.type))

    # --- pauses -------------------------------------------------------------------------------------------
    def pause_condition(self, reason: PauseReason) -> PauseCondition | None:
        return next((c for c in self.status.pause_conditions if c.reason == reason), None)

    def resumed(self) -> bool:
        """The controller paused and the user has since cleared the pause conditions (promote)."""
        return self.status.controller_pause and not self.status.pause_conditions

    def add_pause(self, reason: PauseReason, message: str) -> PauseCondition:
        existing = self.pause_condition(reason)
        if existing is not None:
            return existing
        condition = PauseCondition(reason=reason, start_time=self.now)
        self.update(pause_conditions=[*self.status.pause_conditions, condition], controller_pause=True)
        self.event(EventType.NORMAL, "RolloutPaused", f"Rollout is paused ({reason.value}): {message}")
        return condition

    def clear_pauses(self) -> None:
        if self.status.pause_conditions or self.status.controller_pause:
            self.update(pause_conditions=[], controller_pause=False)

    # --- outcomes -----------------------------------------------------------------------------------------
    def number(self) -> int:
        """The revision number of the new pod template (the next free one if it is not running yet)."""
        return self.revision_number(self.new_hash)

    def request_abort(self, reason: str) -> None:
        """Abort the update (analysis failed, a gate, the deadline, the user); strategies act on it this pass."""
        if self.status.abort and self.status.aborted_at is not None:
            return
        self.update(abort=True, aborted_at=self.now)
        message = f"Rollout aborted update to revision {self.number()}: {reason}"
        self.set_condition("Progressing", False, "RolloutAborted", message)
        self.event(EventType.WARNING, "RolloutAborted", message)

    def record_abort_by_user(self) -> None:
        """``status.abort`` set by a control: note when and why once, like an abort the engine decided."""
        if self.status.abort and self.status.aborted_at is None:
            self.request_abort("aborted by user")

    def completed(self, old_stable: str | None, scale_down_delay: float | None) -> None:
        """The new revision became stable; the old one retires after ``scale_down_delay`` seconds (if given)."""
        if old_stable is not None and old_stable != self.new_hash and scale_down_delay is not None:
            deadline = self.now + timedelta(seconds=scale_down_delay)
            self.update(scale_down_at={**self.status.scale_down_at, old_stable: deadline})
        self.set_condition("Progressing", True, "NewReplicaSetAvailable", "Rollout is healthy")
        self.event(
            EventType.NORMAL,
            "RolloutCompleted",
            f"Rollout completed update to revision {self.number()} ({self.new_hash})",
        )
        self.progressed = True

    # --- output -------------------------------------------------------------------------------------------
    def act(self, action: Action) -> None:
        self.actions.append(action)

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type=kind, reason=reason, message=message))

    def wake_at(self, when: datetime) -> None:
        self.wakeups.append(when)

    def wake_after(self, seconds: float) -> None:
        self.wakeups.append(self.now + timedelta(seconds=seconds))

    def wait(self, message: str, *, replicas: bool = False) -> None:
        """Record what the rollout is waiting on (the phase message) and whether replicas are the blocker."""
        if not self.waiting_for:
            self.waiting_for = message
        self.waiting_on_replicas = self.waiting_on_replicas or replicas

    # --- observations -------------------------------------------------------------------------------------
    def revision(self, pod_hash: str | None) -> RevisionState | None:
        return self.obs.revision(pod_hash)

    def revision_number(self, pod_hash: str) -> int:
        found = self.obs.revision(pod_hash)
        return found.number if found is not None else self.obs.next_revision_number()

    def decision(self) -> Decision:
        requeue: float | None = None
        if self.progressed:
            requeue = 0.0
        elif self.wakeups:
            requeue = max(0.0, (min(self.wakeups) - self.now).total_seconds())
        status = self.status
        generation = self.rollout.metadata.generation
        if generation is not None and status.observed_generation != str(generation):
            # Argo's signal that this spec has been seen and acted on (a string, as Argo writes it): tools such as
            # `status --timeout` must not call a rollout Healthy from a status computed for an older spec.
            status = status.model_copy(update={"observed_generation": str(generation)})
        return Decision(
            status=status,
            actions=tuple(self.actions),
            events=tuple(self.events),
            requeue_after=requeue,
        )
