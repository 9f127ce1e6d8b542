"""Gate webhooks (confirm-rollout, pre-rollout, confirm-promotion, rollback) driven through `decide`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from headway.core import actions as a
from headway.spec.status import Phase
from tests.unit.core.driver import World, healthy, rollout, settled, started

STEPS = [{"setWeight": 25}, {"pause": {"duration": 30}}, {"setWeight": 50}]


def gate(kind: str, name: str | None = None) -> dict[str, Any]:
    return {"name": name or kind, "type": kind, "url": f"http://127.0.0.1:9/{kind}", "intervalSeconds": 15}


def canary_with(*gates: dict[str, Any], **strategy: Any) -> World:
    return started(rollout({"canary": {"steps": STEPS, **strategy}}, webhooks=list(gates)))


def test_confirm_rollout_holds_the_new_revision_at_zero_pods_until_yes() -> None:
    w = canary_with(gate("confirm-rollout"))
    w.deploy("app:2")
    w.run(until=lambda w: w.now - w.decisions[0].status.conditions[0].last_update_time > timedelta(minutes=5))
    assert w.new_hash not in w.revisions
    assert "waiting for confirm-rollout gate" in w.status.message
    asks = [x for x in w.log if isinstance(x, a.CallGate)]
    assert 2 <= len(asks) <= 5 * 60 // 15 + 2  # asked again every interval, not every pass
    w.gate_answers["confirm-rollout"] = True
    w.run(until=settled)


def test_pre_rollout_yes_lets_traffic_start() -> None:
    w = canary_with(gate("pre-rollout"))
    w.gate_answers["pre-rollout"] = True
    w.deploy("app:2").run(until=settled)


def test_pre_rollout_no_aborts_before_the_canary_takes_traffic() -> None:
    w = canary_with(gate("pre-rollout"))
    w.gate_answers["pre-rollout"] = False
    w.deploy("app:2").run(until=lambda w: w.status.abort)
    assert w.replicas(w.new_hash) == 0
    assert "pre-rollout" in w.status.message


def test_confirm_promotion_holds_at_the_last_step_until_yes() -> None:
    w = canary_with(gate("confirm-promotion"))
    w.gate_answers["confirm-promotion"] = False
    w.deploy("app:2").run(until=lambda w: w.status.current_step_index == len(STEPS) - 1 and w.replicas(w.new_hash) == 5)
    w.now += timedelta(hours=1)
    w.step()
    assert w.status.stable_rs != w.new_hash
    assert w.replicas(w.new_hash) == 5  # held at the last step's weight
    w.gate_answers["confirm-promotion"] = True
    w.run(until=settled)


def test_rollback_gate_aborts_as_soon_as_it_says_yes() -> None:
    w = canary_with(gate("rollback"))
    w.gate_answers["rollback"] = False
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    w.gate_answers["rollback"] = True
    w.run(until=lambda w: w.status.abort, limit=60)
    assert "rollback gate rollback" in w.status.message


def test_a_yes_for_one_release_is_not_a_yes_for_the_next() -> None:
    w = canary_with(gate("confirm-rollout"))
    w.gate_answers["confirm-rollout"] = True
    w.deploy("app:2").run(until=settled)
    w.gate_answers["confirm-rollout"] = False
    w.deploy("app:3")
    w.run(until=lambda w: len([x for x in w.log if isinstance(x, a.CallGate) and x.hash == w.new_hash]) >= 2)
    assert w.new_hash not in w.revisions


def test_blue_green_confirm_promotion_holds_the_switch() -> None:
    w = started(
        rollout(
            {"blueGreen": {"activeService": "web-active", "previewService": "web-preview"}},
            webhooks=[gate("confirm-promotion")],
        )
    )
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: "confirm-promotion" in w.status.message)
    w.now += timedelta(minutes=10)
    w.step()
    assert w.services["web-active"] == old
    w.gate_answers["confirm-promotion"] = True
    w.run(until=healthy)
    assert w.services["web-active"] == w.new_hash
