"""The result of one pure pass: the next status, the ordered actions, events, and when to look again."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from headway.core.actions import Action
from headway.spec.status import RolloutStatus


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    """A human-readable record of something that happened; reasons are stable identifiers (CamelCase)."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    """Seconds until a timer fires (pause end, scale-down delay, deadline); None: wait for a change."""
