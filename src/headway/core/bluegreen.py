"""The blue/green strategy: bring the new revision up behind the preview Service, check it, switch active.

Order per update (Argo's): scale the new revision to ``previewReplicaCount`` (or full), point preview at it, wait
until available, run pre-promotion analysis, pause (``autoPromotionEnabled: false``) or wait
``autoPromotionSeconds``, scale to full, switch the active Service, run post-promotion analysis, and only then
call the new revision stable. Until then the old revision stays at full size, so a failed post-promotion
analysis switches the active Service straight back with no cold start.
"""

from __future__ import annotations

from datetime import timedelta

from headway.core import gates, runs
from headway.core.actions import CreateRevision, RunKind, ScaleRevision, ServiceRole, SwitchService
from headway.core.decision import EventType
from headway.core.passes import Pass
from headway.spec.rollout import BlueGreenStrategy
from headway.spec.status import PauseReason


def strategy(p: Pass) -> BlueGreenStrategy:
    blue_green = p.spec.strategy.blue_green
    if blue_green is None:  # pragma: no cover - decide dispatches on it
        raise ValueError("not a blue/green rollout")
    return blue_green


def point(p: Pass, role: ServiceRole, pod_hash: str | None) -> None:
    """Point the active or preview Service at ``pod_hash`` unless it already is."""
    blue_green = strategy(p)
    service = blue_green.active_service if role == ServiceRole.ACTIVE else blue_green.preview_service
    selectors = p.status.blue_green
    current = selectors.active_selector if role == ServiceRole.ACTIVE else selectors.preview_selector
    if pod_hash is None or current == pod_hash:
        return
    if service:
        p.act(SwitchService(role=role, service=service, hash=pod_hash))
        p.event(EventType.NORMAL, "SwitchService", f"Switched selector of {role.value} service {service} to {pod_hash}")
    if role == ServiceRole.ACTIVE:
        p.update_blue_green(active_selector=pod_hash)
    else:
        p.update_blue_green(preview_selector=pod_hash)
    p.progressed = True


def scale(p: Pass, pod_hash: str | None, replicas: int) -> bool:
    """Scale a revision; True when it already has ``replicas`` all available."""
    revision = p.revision(pod_hash)
    if pod_hash is None:
        return False
    if revision is None:
        p.act(CreateRevision(hash=pod_hash, number=p.obs.next_revision_number(), replicas=replicas))
        return False
    if revision.replicas != replicas:
        p.act(ScaleRevision(hash=pod_hash, replicas=replicas))
        return False
    return revision.available >= replicas


def progress(p: Pass) -> None:
    """A blue/green update in progress: the new revision is not yet the stable one."""
    if not p.status.abort:
        if p.status.blue_green.active_selector == p.new_hash:
            _after_switch(p)
        else:
            _before_switch(p)
    if p.status.abort:
        abort(p)


def _before_switch(p: Pass) -> None:
    blue_green = strategy(p)
    replicas = p.spec.replicas_or_default()
    point(p, ServiceRole.ACTIVE, p.status.stable_rs)
    asked = gates.rollback_requested(p)
    if asked is not None:
        p.request_abort(f"rollback gate {asked} asked for it")
        return
    if gates.check(p, "confirm-rollout") != gates.Gate.OPEN:
        return
    preview_count = replicas
    if blue_green.preview_replica_count is not None and not p.status.blue_green.scale_up_preview_check_point:
        preview_count = blue_green.preview_replica_count
    point(p, ServiceRole.PREVIEW, p.new_hash)
    if not scale(p, p.new_hash, preview_count):
        p.wait("preview replicas are becoming available", replicas=True)
        return
    if p.spec.paused:
        p.wait("manually paused")
        return
    if not p.status.promote_full and not p.status.blue_green.scale_up_preview_check_point:
        pre = gates.check(p, "pre-rollout", no_fails=True)
        if pre == gates.Gate.FAILED:
            p.request_abort("a pre-rollout gate said no")
        if pre != gates.Gate.OPEN or not _pre_promotion(p) or not _promotion_pause(p):
            return
        if gates.check(p, "confirm-promotion") != gates.Gate.OPEN:
            return
        p.clear_pauses()
        p.update_blue_green(scale_up_preview_check_point=True)
        p.progressed = True
    if not scale(p, p.new_hash, replicas):
        p.wait("scaling the new revision to full size before the switch", replicas=True)
        return
    point(p, ServiceRole.ACTIVE, p.new_hash)
    p.clear_pauses()
    if blue_green.post_promotion_analysis is None or p.status.promote_full:
        complete(p)


def _pre_promotion(p: Pass) -> bool:
    analysis = strategy(p).pre_promotion_analysis
    if analysis is None:
        return True
    tracked = runs.track_analysis(
        p,
        p.status.blue_green.pre_promotion_analysis_run_status,
        label="pre",
        kind=RunKind.PRE_PROMOTION,
        analysis=analysis,
    )
    p.update_blue_green(pre_promotion_analysis_run_status=tracked.record)
    return _verdict(p, tracked, "Pre-promotion analysis run")


def _verdict(p: Pass, tracked: runs.Tracked, what: str) -> bool:
    if tracked.verdict == runs.Verdict.PASSED:
        return True
    if tracked.verdict == runs.Verdict.FAILED:
        p.request_abort(runs.failure_message(what, tracked))
    elif tracked.verdict == runs.Verdict.INCONCLUSIVE:
        if p.resumed():
            return True
        p.add_pause(PauseReason.INCONCLUSIVE_ANALYSIS, runs.failure_message(what, tracked))
    else:
        p.wait(f"waiting for {tracked.record.name}")
    return False


def _promotion_pause(p: Pass) -> bool:
    """Hold before the switch: until promoted, or for autoPromotionSeconds."""
    blue_green = strategy(p)
    if blue_green.auto_promotion() and blue_green.auto_promotion_seconds is None:
        return True
    if p.resumed() and not p.status.pause_conditions:
        return True
    condition = p.add_pause(PauseReason.BLUE_GREEN_PAUSE, "waiting to switch the active service")
    if blue_green.auto_promotion() and blue_green.auto_promotion_seconds is not None:
        end = condition.start_time + timedelta(seconds=blue_green.auto_promotion_seconds)
        if p.now >= end:
            return True
        p.wake_at(end)
    p.wait("paused before promotion")
    return False


def _after_switch(p: Pass) -> None:
    blue_green = strategy(p)
    scale(p, p.new_hash, p.spec.replicas_or_default())
    analysis = blue_green.post_promotion_analysis
    if analysis is None or p.status.promote_full:
        complete(p)
        return
    tracked = runs.track_analysis(
        p,
        p.status.blue_green.post_promotion_analysis_run_status,
        label="post",
        kind=RunKind.POST_PROMOTION,
        analysis=analysis,
    )
    p.update_blue_green(post_promotion_analysis_run_status=tracked.record)
    if _verdict(p, tracked, "Post-promotion analysis run"):
        complete(p)


def complete(p: Pass) -> None:
    """The new revision is stable; the old one scales down after scaleDownDelaySeconds."""
    old = p.status.stable_rs
    p.update(stable_rs=p.new_hash, promote_full=False)
    p.clear_pauses()
    p.update_blue_green(scale_up_preview_check_point=False)
    p.completed(old, strategy(p).scale_down_delay())


def abort(p: Pass) -> None:
    """Active (and preview) back on stable; the new revision scales down after abortScaleDownDelaySeconds."""
    blue_green = strategy(p)
    p.record_abort_by_user()
    runs.terminate_analysis(p, p.status.blue_green.pre_promotion_analysis_run_status)
    runs.terminate_analysis(p, p.status.blue_green.post_promotion_analysis_run_status)
    p.clear_pauses()
    p.update(promote_full=False)
    p.update_blue_green(scale_up_preview_check_point=False)
    scale(p, p.status.stable_rs, p.spec.replicas_or_default())
    point(p, ServiceRole.ACTIVE, p.status.stable_rs)
    point(p, ServiceRole.PREVIEW, p.status.stable_rs)
    new = p.revision(p.new_hash)
    delay = blue_green.abort_scale_down_delay()
    if new is None or new.replicas == 0 or delay == 0:
        return
    deadline = (p.status.aborted_at or p.now) + timedelta(seconds=delay)
    if p.now >= deadline:
        p.act(ScaleRevision(hash=p.new_hash, replicas=0))
    else:
        p.wake_at(deadline)


def steady(p: Pass) -> None:
    """The new revision is stable: both Services on it, nothing pending."""
    p.update(abort=False, aborted_at=None, promote_full=False)
    p.clear_pauses()
    p.update_blue_green(scale_up_preview_check_point=False)
    point(p, ServiceRole.ACTIVE, p.new_hash)
    point(p, ServiceRole.PREVIEW, p.new_hash)
