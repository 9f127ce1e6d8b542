"""User controls (promote, abort, retry, pause, resume, restart, undo) as pure functions on spec and status.

A control only records the user's request, exactly as ``kubectl argo rollouts`` patches the object; the next
``decide`` pass acts on it. So a control is safe to send at any time, survives restarts, and never races the
engine: the engine saves status with the version it read, and a control written in between wins the re-read.
Controls that make no sense in the current state raise `ControlError` with a message for the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus


class ControlError(ValueError):
    """The control does not apply to the rollout's current state (the message says why)."""


def promote(rollout: Rollout, status: RolloutStatus, *, full: bool = False) -> tuple[Rollout, RolloutStatus]:
    """Resume a pause, or skip the current step; ``full`` skips every remaining step and analysis.

    Like Argo: promote clears ``spec.paused`` and the pause conditions; when nothing is paused it moves the
    canary past the current step (a running step analysis is then stopped by the engine).
    """
    if status.abort:
        raise ControlError("rollout is aborted: use retry to start the update again")
    if status.current_pod_hash is not None and status.current_pod_hash == status.stable_rs and not rollout.spec.paused:
        raise ControlError("nothing to promote: the rollout is already fully promoted")
    unpaused = _with_paused(rollout, paused=False)
    if full:
        return unpaused, status.model_copy(update={"promote_full": True, "pause_conditions": []})
    if status.pause_conditions:
        return unpaused, status.model_copy(update={"pause_conditions": []})
    canary = rollout.spec.strategy.canary
    if rollout.spec.paused:
        return unpaused, status
    if canary is not None and status.current_step_index is not None and status.current_step_index < len(canary.steps):
        return unpaused, status.model_copy(update={"current_step_index": status.current_step_index + 1})
    raise ControlError("nothing to promote: the rollout is not paused and has no step to skip")


def abort(status: RolloutStatus) -> RolloutStatus:
    """Stop the update: all traffic back to stable (the engine records when and scales the canary down)."""
    if status.current_pod_hash is not None and status.current_pod_hash == status.stable_rs:
        raise ControlError("nothing to abort: no update is in progress")
    return status.model_copy(update={"abort": True})


def retry(status: RolloutStatus) -> RolloutStatus:
    """Start an aborted update again from the first step."""
    if not status.abort:
        raise ControlError("retry applies to an aborted rollout only")
    return status.model_copy(
        update={
            "abort": False,
            "aborted_at": None,
            "current_step_index": 0,
            "pause_conditions": [],
            "controller_pause": False,
            "promote_full": False,
            "canary": status.canary.model_copy(
                update={
                    "current_step_analysis_run_status": None,
                    "current_background_analysis_run_status": None,
                    "current_experiment": None,
                }
            ),
            "blue_green": status.blue_green.model_copy(
                update={"pre_promotion_analysis_run_status": None, "post_promotion_analysis_run_status": None}
            ),
        }
    )


def pause(rollout: Rollout) -> Rollout:
    """Hold the rollout where it is (``spec.paused: true``)."""
    return _with_paused(rollout, paused=True)


def resume(rollout: Rollout) -> Rollout:
    """Undo `pause` (``spec.paused: false``); controller pauses (steps) need `promote`."""
    return _with_paused(rollout, paused=False)


def restart(rollout: Rollout, now: datetime) -> Rollout:
    """Restart every pod of the live revisions, one revision at a time (``spec.restartAt``)."""
    spec = rollout.spec.model_copy(update={"restart_at": now.isoformat()})
    return rollout.model_copy(update={"spec": spec})


def undo(rollout: Rollout, template: Mapping[str, Any]) -> Rollout:
    """Go back to an earlier revision's pod template (the shell looks the template up by revision number).

    Within ``rollbackWindow`` the engine fast-tracks it: no steps, no analysis.
    """
    spec = rollout.spec.model_copy(update={"template": dict(template)})
    return rollout.model_copy(update={"spec": spec})


def _with_paused(rollout: Rollout, *, paused: bool) -> Rollout:
    if rollout.spec.paused == paused:
        return rollout
    return rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"paused": paused})})
