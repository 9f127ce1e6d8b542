"""The kstatus conditions (``Ready``, ``Reconciling``, ``Stalled``) derived from a rollout's phase.

Argo's own conditions (``Progressing``, ``Available``, ``Paused``, ``Completed``, ``Healthy``) say a lot, but
tools that know nothing about Rollouts read the generic ones that Kubernetes' kstatus library defines: Flux's
health checks, ``kubectl wait --for=condition=Ready``, Argo CD's and many CI scripts' "is it done" checks. So every
status Headway saves also carries:

- ``Ready``: True only when the rollout is Healthy (the new revision is stable and fully available), with the
  reason and the message of the phase otherwise;
- ``Reconciling`` (True while the rollout is Progressing or Paused: something is still to happen, even if it waits
  for a person) and ``Stalled`` (True when it is Degraded: aborted, past its progress deadline, invalid), each
  removed when it does not hold, as kstatus' "abnormal-true" conditions should be.

Each carries ``observedGeneration``, the spec generation it was computed for, so a reader can tell a Ready from
the previous spec apart (kstatus also compares ``status.observedGeneration``). Pure: the caller passes the time.
"""

from __future__ import annotations

from datetime import datetime

from headway.spec.status import Condition, Phase, RolloutStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
KINDS = (READY, RECONCILING, STALLED)


def with_readiness(status: RolloutStatus, *, generation: int | None, now: datetime) -> RolloutStatus:
    """``status`` with its kstatus conditions brought in line with its phase (unchanged if they already are)."""
    phase = status.phase
    reason, message = _reason(status)
    wanted: dict[str, tuple[bool, str, str]] = {
        READY: (phase is Phase.HEALTHY, reason, message),
    }
    if phase in (Phase.PROGRESSING, Phase.PAUSED, None):
        wanted[RECONCILING] = (True, reason, message)
    elif phase is Phase.DEGRADED:
        wanted[STALLED] = (True, reason, message)
    kept = [c for c in status.conditions if c.type not in KINDS]
    ours: list[Condition] = []
    for kind, (truth, why, text) in wanted.items():
        value = "True" if truth else "False"
        old = status.condition(kind)
        if old is not None and (old.status, old.reason, old.message, old.observed_generation) == (
            value,
            why,
            text,
            generation,
        ):
            ours.append(old)
            continue
        transition = old.last_transition_time if old is not None and old.status == value else now
        ours.append(
            Condition(
                type=kind,
                status=value,
                reason=why,
                message=text,
                last_update_time=now,
                last_transition_time=transition,
                observed_generation=generation,
            )
        )
    conditions = sorted([*kept, *ours], key=lambda c: c.type)
    if conditions == status.conditions:
        return status
    return status.model_copy(update={"conditions": conditions})


def _reason(status: RolloutStatus) -> tuple[str, str]:
    """A CamelCase reason and a sentence, from the phase and its message (``RolloutAborted: ...``)."""
    phase, message = status.phase, status.message
    if phase is Phase.HEALTHY:
        return "RolloutHealthy", "Rollout is healthy"
    if phase is None:
        return "Progressing", message or "Rollout is starting"
    head, colon, tail = message.partition(": ")
    if colon and head.isidentifier() and head[:1].isupper():
        return head, tail or message  # "RolloutAborted: ...", "ProgressDeadlineExceeded: ...", "InvalidSpec: ..."
    if phase is Phase.PAUSED:
        return "Paused", f"Rollout is paused: {message}" if message else "Rollout is paused"
    if phase is Phase.DEGRADED:
        return "Degraded", message or "Rollout is degraded"
    return "Progressing", message or "Rollout is progressing"
