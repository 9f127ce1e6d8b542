"""kstatus' Ready / Reconciling / Stalled follow the phase, carry the generation, and move only when it changes."""

from __future__ import annotations

from datetime import timedelta

from headway.core.readiness import with_readiness
from headway.platforms.fake import EPOCH
from headway.spec.status import Phase, RolloutStatus
from tests.scenarios.harness import canary, run_scenario


def _kinds(status: RolloutStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions if c.type in ("Ready", "Reconciling", "Stalled")}


def test_a_healthy_rollout_is_ready_and_nothing_else() -> None:
    result = run_scenario(canary([{"setWeight": 25}, {"pause": {"duration": "10s"}}]), "good")
    assert _kinds(result.status) == {"Ready": ("True", "RolloutHealthy")}


def test_a_paused_rollout_is_reconciling_and_not_ready() -> None:
    result = run_scenario(canary([{"setWeight": 25}, {"pause": {}}]), "good", auto_promote_after=None)
    assert _kinds(result.status) == {"Ready": ("False", "Paused"), "Reconciling": ("True", "Paused")}
    assert result.status.condition("Ready").message == "Rollout is paused: CanaryPauseStep"  # type: ignore[union-attr]


def test_an_aborted_rollout_is_stalled_with_the_abort_reason() -> None:
    rollout = canary(
        [{"setWeight": 25}, {"pause": {"duration": "10m"}}], progressDeadlineSeconds=30, progressDeadlineAbort=True
    )
    status = run_scenario(rollout, "crashloop").status
    assert _kinds(status) == {"Ready": ("False", "RolloutAborted"), "Stalled": ("True", "RolloutAborted")}
    stalled = status.condition("Stalled")
    assert stalled is not None and "timed out progressing" in stalled.message


def test_conditions_carry_the_generation_and_keep_their_times_until_something_changes() -> None:
    status = RolloutStatus(phase=Phase.PROGRESSING, message="step 1/2: scaling the canary")
    first = with_readiness(status, generation=3, now=EPOCH)
    ready = first.condition("Ready")
    assert ready is not None and ready.observed_generation == 3
    assert with_readiness(first, generation=3, now=EPOCH + timedelta(seconds=5)) is first
    healthy = with_readiness(first.model_copy(update={"phase": Phase.HEALTHY}), generation=4, now=EPOCH + timedelta(1))
    assert _kinds(healthy) == {"Ready": ("True", "RolloutHealthy")}
    now_ready = healthy.condition("Ready")
    assert now_ready is not None and now_ready.observed_generation == 4
    assert now_ready.last_transition_time == EPOCH + timedelta(1)
