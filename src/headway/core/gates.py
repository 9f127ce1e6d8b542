"""Gate webhooks (Flagger's confirm-rollout, pre-rollout, confirm-promotion and rollback hooks) in the core.

The core asks (a `CallGate` action) and reads the answer from the observation on a later pass, so a slow or
dead endpoint never blocks a pass. Answers are per revision (``<gate>/<hash>``): a yes for one release is not a
yes for the next. A passed confirm or pre-rollout gate is remembered in status so it is not asked again.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from headway.core.actions import CallGate
from headway.core.passes import Pass
from headway.spec.rollout import GateType, Webhook


def key(webhook: Webhook, pod_hash: str) -> str:
    return f"{webhook.name}/{pod_hash}"


def _ask(p: Pass, webhook: Webhook) -> None:
    """Call the gate unless an answer younger than its interval is known; come back after the interval."""
    state = p.obs.gates.get(key(webhook, p.new_hash))
    interval = timedelta(seconds=webhook.interval_seconds)
    if state is None or p.now - state.asked_at >= interval:
        p.act(CallGate(key=key(webhook, p.new_hash), webhook=webhook, hash=p.new_hash))
        p.wake_at(p.now + interval)
    else:
        p.wake_at(state.asked_at + interval)


class Gate(StrEnum):
    OPEN = "Open"
    WAIT = "Wait"
    FAILED = "Failed"


def check(p: Pass, kind: GateType, *, no_fails: bool = False) -> Gate:
    """OPEN when every gate of ``kind`` said yes for the new revision; asks the others.

    With ``no_fails`` (pre-rollout), a gate that answered anything but yes is FAILED: the update aborts.
    Otherwise (confirm gates) "no" just means "not yet".
    """
    result = Gate.OPEN
    for webhook in p.spec.webhooks:
        if webhook.type != kind:
            continue
        gate_key = key(webhook, p.new_hash)
        if gate_key in p.status.gates_passed:
            continue
        state = p.obs.gates.get(gate_key)
        if state is not None and state.passed:
            p.update(gates_passed=[*p.status.gates_passed, gate_key])
            continue
        if state is not None and state.answered and no_fails:
            p.wait(f"{kind} gate {webhook.name} said no: {state.message}")
            return Gate.FAILED
        result = Gate.WAIT
        _ask(p, webhook)
        detail = f": {state.message}" if state is not None and state.message else ""
        p.wait(f"waiting for {kind} gate {webhook.name}{detail}")
    return result


def rollback_requested(p: Pass) -> str | None:
    """The name of a rollback gate that answered yes for the new revision (then the update aborts)."""
    for webhook in p.spec.webhooks:
        if webhook.type != "rollback":
            continue
        state = p.obs.gates.get(key(webhook, p.new_hash))
        if state is not None and state.passed:
            return webhook.name
        _ask(p, webhook)
    return None
