"""Whole blue/green rollouts driven through `decide` in virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from headway.core import actions as a
from headway.core import commands
from headway.spec.status import PauseReason, Phase, RunPhase
from tests.unit.core.driver import World, healthy, rollout, settled, started

PRE = {"templates": [{"templateName": "smoke"}]}
POST = {"templates": [{"templateName": "errors"}]}


def blue_green(**extra: Any) -> dict[str, Any]:
    return {"blueGreen": {"activeService": "web-active", "previewService": "web-preview", **extra}}


def kinds_started(w: World) -> list[a.RunKind]:
    return [x.kind for x in w.log if isinstance(x, a.StartAnalysisRun)]


def test_first_deploy_points_both_services_at_the_first_revision() -> None:
    w = started(rollout(blue_green()))
    assert w.services == {"web-active": w.new_hash, "web-preview": w.new_hash}
    assert w.status.blue_green.active_selector == w.new_hash


def test_auto_promotion_switches_active_once_the_new_revision_is_ready() -> None:
    w = started(rollout(blue_green()))
    old = w.new_hash
    w.deploy("app:2")

    def active_always_ready(w: World) -> None:
        active = w.services["web-active"]
        assert w.observe().revisions[active].available == 10, "the active service must never point at unready pods"

    w.run(until=healthy, each=active_always_ready)
    assert w.services["web-active"] == w.new_hash
    assert w.replicas(old) == 10  # kept for scaleDownDelaySeconds
    w.run(until=settled)


def test_preview_replica_count_then_manual_promotion() -> None:
    w = started(rollout(blue_green(previewReplicaCount=2, autoPromotionEnabled=False)))
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    assert w.replicas(w.new_hash) == 2
    assert w.services == {"web-active": old, "web-preview": w.new_hash}
    assert w.status.pause_reasons() == {PauseReason.BLUE_GREEN_PAUSE}
    w.now += timedelta(hours=2)
    w.step()
    assert w.services["web-active"] == old
    w.rollout, w.status = commands.promote(w.rollout, w.status)
    w.run(until=healthy)
    assert w.replicas(w.new_hash) == 10
    assert w.services["web-active"] == w.new_hash


def test_auto_promotion_seconds_waits_then_promotes() -> None:
    w = started(rollout(blue_green(autoPromotionSeconds=300)))
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    paused_at = w.now
    w.run(until=healthy)
    assert w.now - paused_at >= timedelta(seconds=300)


def test_pre_promotion_analysis_gates_the_switch_and_failure_aborts() -> None:
    w = started(rollout(blue_green(prePromotionAnalysis=PRE)), script=lambda n, age: RunPhase.FAILED)
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.abort, limit=600)
    assert kinds_started(w) == [a.RunKind.PRE_PROMOTION]
    assert w.services == {"web-active": old, "web-preview": old}
    assert w.status.phase == Phase.DEGRADED
    w.run(until=lambda w: w.replicas(w.new_hash) == 0)  # abortScaleDownDelaySeconds, 30 s by default


def test_pre_promotion_analysis_success_promotes() -> None:
    w = started(rollout(blue_green(prePromotionAnalysis=PRE)))
    w.deploy("app:2").run(until=settled)
    assert kinds_started(w) == [a.RunKind.PRE_PROMOTION]


def test_post_promotion_failure_switches_active_back_to_stable() -> None:
    w = started(
        rollout(blue_green(postPromotionAnalysis=POST)),
        script=lambda n, age: RunPhase.FAILED if age >= 30 else RunPhase.RUNNING,
    )
    old = w.new_hash
    switched: list[str] = []

    def watch(w: World) -> None:
        if not switched or switched[-1] != w.services["web-active"]:
            switched.append(w.services["web-active"])

    w.deploy("app:2").run(until=lambda w: w.status.abort, each=watch, limit=900)
    assert switched == [old, w.new_hash, old]
    assert w.status.stable_rs == old
    assert w.replicas(old) == 10  # the old revision was never scaled down
    assert w.status.phase == Phase.DEGRADED
    assert "Post-promotion analysis run" in w.status.message


def test_post_promotion_success_makes_the_new_revision_stable() -> None:
    w = started(rollout(blue_green(postPromotionAnalysis=POST)))
    old = w.new_hash
    w.deploy("app:2").run(until=healthy)
    assert w.status.stable_rs == w.new_hash
    assert kinds_started(w) == [a.RunKind.POST_PROMOTION]
    w.run(until=lambda w: w.replicas(old) == 0)


def test_promote_full_skips_analysis_and_pause() -> None:
    w = started(rollout(blue_green(autoPromotionEnabled=False, prePromotionAnalysis=PRE)))
    w.deploy("app:2").run(until=lambda w: bool(w.runs))
    w.rollout, w.status = commands.promote(w.rollout, w.status, full=True)
    w.run(until=healthy, limit=300)
    assert w.services["web-active"] == w.new_hash


def test_user_abort_before_switch_keeps_active_on_stable() -> None:
    w = started(rollout(blue_green(autoPromotionEnabled=False, abortScaleDownDelaySeconds=0)))
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    w.status = commands.abort(w.status)
    w.step()
    w.now += timedelta(hours=1)
    w.step()
    assert w.services == {"web-active": old, "web-preview": old}
    assert w.replicas(w.new_hash) == 10  # abortScaleDownDelaySeconds: 0 keeps the preview up
    assert w.status.phase == Phase.DEGRADED
