"""``decide(rollout, status, observation) -> Decision``: the whole rollout engine as one pure function.

The shell calls it once per pass with fresh observations; it answers with the next status, the ordered
actions, events and when to look again. The same inputs always give the same decision: nothing here reads a
clock, sleeps, logs or does I/O (import-linter enforces it). Work common to both strategies lives here: the
first deploy, noticing a new pod template (including an undo within ``rollbackWindow``), restarts, retiring old
revisions after their scale-down delay, revision history, the progress deadline, and the phase and message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from headway.core import bluegreen, canary, dataplane, readiness, runs
from headway.core.actions import (
    CreateRevision,
    DeleteRevision,
    RestartRevision,
    ScaleRevision,
    ScaleWorkloadRef,
    SetPodMetadata,
)
from headway.core.decision import Decision, EventType
from headway.core.hashing import pod_template_hash
from headway.core.observation import Observation
from headway.core.passes import Pass
from headway.spec.rollout import PodMetadata, Rollout
from headway.spec.status import BlueGreenStatus, CanaryStatus, Phase, RolloutStatus


def decide(rollout: Rollout, status: RolloutStatus, observation: Observation) -> Decision:
    """One pass of the engine; see the module docstring."""
    p = Pass(rollout, status, observation, pod_template_hash(rollout.spec.template))
    dataplane.verify(p)  # first: drift repairs precede the strategy's actions; no Healthy without verified routing
    is_canary = rollout.spec.strategy.canary is not None
    if p.status.stable_rs is None:
        _first_deploy(p)
    else:
        if p.status.current_pod_hash != p.new_hash:
            _new_template(p)
        _restart(p)
        p.keep.add(p.status.stable_rs)
        if p.new_hash == p.status.stable_rs:
            _scale_stable(p)
            canary.steady(p) if is_canary else bluegreen.steady(p)
        elif is_canary:
            canary.progress(p)
        else:
            bluegreen.progress(p)
    if p.status.stable_rs is not None:
        p.keep.add(p.status.stable_rs)
    _progress_deadline(p)
    _retire_old_revisions(p)
    _ephemeral_metadata(p)
    _summarise(p)
    _scale_down_workload_ref(p)
    dataplane.conclude(p)
    return p.decision()


def _first_deploy(p: Pass) -> None:
    """No stable revision yet: the first template goes straight to full size, no steps (as in Argo)."""
    replicas = p.spec.replicas_or_default()
    revision = p.revision(p.new_hash)
    if revision is None:
        p.act(CreateRevision(hash=p.new_hash, number=p.obs.next_revision_number(), replicas=replicas))
        p.event(EventType.NORMAL, "RolloutCreated", f"Created revision 1 ({p.new_hash}) at {replicas} replicas")
    steps = p.spec.strategy.canary.steps if p.spec.strategy.canary is not None else []
    p.update(
        stable_rs=p.new_hash,
        current_pod_hash=p.new_hash,
        current_step_index=len(steps) if p.spec.strategy.canary is not None else None,
    )
    p.set_condition("Progressing", True, "NewReplicaSetCreated", f"Created revision {p.new_hash}")
    _scale_stable(p)
    if p.spec.strategy.canary is not None:
        canary.steady(p)
    else:
        bluegreen.steady(p)


def _scale_stable(p: Pass) -> None:
    stable = p.revision(p.status.stable_rs)
    replicas = p.spec.replicas_or_default()
    if stable is not None and p.status.stable_rs is not None and stable.replicas != replicas:
        p.act(ScaleRevision(hash=p.status.stable_rs, replicas=replicas))
    if stable is None or stable.available < replicas:
        p.wait("updated replicas are still becoming available", replicas=True)


def _new_template(p: Pass) -> None:
    """A new pod template: reset the steps (or skip them for an undo inside rollbackWindow) and clear controls."""
    old = p.status
    runs.terminate_analysis(p, old.canary.current_step_analysis_run_status)
    runs.terminate_analysis(p, old.canary.current_background_analysis_run_status)
    runs.terminate_experiment(p, old.canary.current_experiment)
    runs.terminate_analysis(p, old.blue_green.pre_promotion_analysis_run_status)
    runs.terminate_analysis(p, old.blue_green.post_promotion_analysis_run_status)
    steps = p.spec.strategy.canary.steps if p.spec.strategy.canary is not None else []
    fast_track = p.new_hash == old.stable_rs or _rollback_within_window(p)
    p.update(
        current_pod_hash=p.new_hash,
        current_step_index=len(steps) if fast_track else (0 if p.spec.strategy.canary is not None else None),
        abort=False,
        aborted_at=None,
        promote_full=fast_track and p.new_hash != old.stable_rs,
        pause_conditions=[],
        controller_pause=False,
        canary=CanaryStatus(weights=old.canary.weights, selectors=old.canary.selectors),
        blue_green=BlueGreenStatus(
            active_selector=old.blue_green.active_selector, preview_selector=old.blue_green.preview_selector
        ),
        progress_marker="",
        deadline_exceeded=False,
    )
    # The new revision must not be scaled down by a deadline left over from an earlier abort or promotion.
    p.update(scale_down_at={h: t for h, t in old.scale_down_at.items() if h != p.new_hash})
    revision = p.revision(p.new_hash)
    number = revision.number if revision is not None else p.obs.next_revision_number()
    how = " (rollback within window: skipping steps)" if fast_track and p.new_hash != old.stable_rs else ""
    p.event(EventType.NORMAL, "RolloutUpdated", f"Rollout updated to revision {number} ({p.new_hash}){how}")
    p.set_condition("Progressing", True, "RolloutUpdated", f"Updating to revision {number}")
    p.progressed = True


def _rollback_within_window(p: Pass) -> bool:
    """Going back to an older revision that is at most ``rollbackWindow.revisions`` behind (Argo's fast-track)."""
    window = p.spec.rollback_window.revisions if p.spec.rollback_window is not None else None
    new = p.revision(p.new_hash)
    stable = p.revision(p.status.stable_rs)
    if not window or new is None or stable is None or new.number >= stable.number:
        return False
    newer = sum(1 for r in p.obs.revisions.values() if r.number > new.number)
    return newer <= window


RESTART_CHECK_SECONDS = 10.0
"""How soon to look again while a restart waits on a replaced pod (its readiness usually wakes us first)."""


def _restart(p: Pass) -> None:
    """``spec.restartAt`` in the past and after the last restart: replace every pod created before it.

    Like Argo's pod restarter: revisions in priority order (stable, new, then older ones still running), one pod
    at a time, and only while every revision is fully available, so a restart never takes more than one pod
    away. ``status.restartedAt`` is written when no pod predates ``restartAt`` any more. A platform that cannot
    report pod ages is asked once per revision and paces the restart itself.
    """
    if p.spec.restart_at is None:
        return
    try:
        when = datetime.fromisoformat(p.spec.restart_at.replace("Z", "+00:00"))
    except ValueError:
        return
    if when > p.now:
        p.wake_at(when)
        return
    if p.status.restarted_at is not None and p.status.restarted_at >= when:
        return
    order = {p.status.stable_rs: 0, p.new_hash: 1}
    live = sorted(
        (r for r in p.obs.revisions.values() if r.replicas > 0),
        key=lambda r: (order.get(r.hash, 2), r.number),
    )
    cutoff = when.replace(microsecond=0)  # Kubernetes stamps pods to the second: no endless re-restarts
    stale = [r for r in live if r.oldest_pod_at is not None and r.oldest_pod_at < cutoff]
    if stale:
        if all(r.available >= r.replicas for r in live):
            p.act(RestartRevision(hash=stale[0].hash, before=cutoff))
        p.wake_after(RESTART_CHECK_SECONDS)
        return
    if any(r.available < r.replicas for r in live) and any(r.oldest_pod_at is not None for r in live):
        p.wake_after(RESTART_CHECK_SECONDS)  # the last replacement is still coming up
        return
    for revision in live:
        if revision.oldest_pod_at is None:
            p.act(RestartRevision(hash=revision.hash))
    p.update(restarted_at=when)
    p.event(EventType.NORMAL, "RolloutRestarted", f"Restarted the pods of {p.rollout.name} (restartAt {when})")


def _retire_old_revisions(p: Pass) -> None:
    """Scale down revisions no longer needed once their deadline passes, then trim history."""
    deadlines = dict(p.status.scale_down_at)
    delay = _old_revision_delay(p)
    for revision in sorted(p.obs.revisions.values(), key=lambda r: r.number):
        if revision.hash in p.keep:
            continue
        if revision.replicas == 0:
            deadlines.pop(revision.hash, None)
            continue
        deadline = deadlines.setdefault(revision.hash, p.now + timedelta(seconds=delay))
        if p.now >= deadline:
            p.act(ScaleRevision(hash=revision.hash, replicas=0))
            deadlines.pop(revision.hash)
        else:
            p.wake_at(deadline)
    deadlines = {h: t for h, t in deadlines.items() if h in p.obs.revisions and h not in p.keep}
    if deadlines != p.status.scale_down_at:
        p.update(scale_down_at=deadlines)
    retired = [r for r in p.obs.revisions.values() if r.hash not in p.keep and r.replicas == 0]
    retired.sort(key=lambda r: r.number, reverse=True)
    for revision in retired[p.spec.revision_history_limit_or_default() :]:
        p.act(DeleteRevision(hash=revision.hash))


def _old_revision_delay(p: Pass) -> int:
    """Old revisions keep serving while routers converge: delay with a router or blue/green, none without."""
    if p.spec.strategy.blue_green is not None:
        return p.spec.strategy.blue_green.scale_down_delay()
    strategy = p.spec.strategy.canary
    if strategy is not None and strategy.traffic_routing is not None:
        return strategy.scale_down_delay()
    return 0


def _ephemeral_metadata(p: Pass) -> None:
    """canaryMetadata/stableMetadata (blue/green: previewMetadata/activeMetadata) follow the roles as they are now.

    While an update is in progress the new revision is the canary (preview) and the stable one the stable
    (active); once they are the same revision it carries the stable metadata alone. Any other revision still
    running (an old stable during its scale-down delay) carries the stable metadata too, as in Argo, so
    whatever selects on it keeps those pods until they go. Asked every pass (the platform writes only differences), so a
    pass that stopped halfway is finished by the next; nothing is asked when no such metadata is declared.
    """
    roles = _metadata_roles(p)
    if roles is None:
        return
    canary_metadata, stable_metadata = roles
    stable, new = p.status.stable_rs, p.new_hash
    wanted: dict[str, PodMetadata | None] = {}
    if stable is not None and stable != new:
        wanted[new] = canary_metadata
    if stable is not None:
        wanted[stable] = stable_metadata
    for revision in sorted(p.obs.revisions.values(), key=lambda r: r.number):
        if revision.hash not in wanted and revision.replicas > 0:
            wanted[revision.hash] = stable_metadata  # as Argo: a revision still running is not the canary
    for pod_hash, metadata in wanted.items():
        p.act(SetPodMetadata(hash=pod_hash, metadata=metadata))


def _metadata_roles(p: Pass) -> tuple[PodMetadata | None, PodMetadata | None] | None:
    """(new revision's, stable revision's) ephemeral metadata, or None when the strategy declares neither."""
    canary, blue_green = p.spec.strategy.canary, p.spec.strategy.blue_green
    if canary is not None and (canary.canary_metadata is not None or canary.stable_metadata is not None):
        return canary.canary_metadata, canary.stable_metadata
    if blue_green is not None and (blue_green.preview_metadata is not None or blue_green.active_metadata is not None):
        return blue_green.preview_metadata, blue_green.active_metadata
    return None


def _scale_down_workload_ref(p: Pass) -> None:
    """``spec.workloadRef.scaleDown``: retire the user's Deployment as the Rollout takes over (Argo's migration).

    ``never`` (the default) leaves it alone. ``onsuccess`` scales it to 0 once the Rollout is Healthy.
    ``progressively`` keeps (Deployment replicas + the Rollout's available pods) at ``spec.replicas`` or more by
    scaling the Deployment down only as far as the Rollout's available pods cover, and to 0 once Healthy. The
    platform only ever scales down, so a dip in the Rollout's pods never grows the Deployment back.
    """
    ref = p.spec.workload_ref
    if ref is None or ref.scale_down in (None, "never"):
        return
    if p.status.phase == Phase.HEALTHY:
        p.act(ScaleWorkloadRef(replicas=0))
    elif ref.scale_down == "progressively":
        available = sum(r.available for r in p.obs.revisions.values())
        p.act(ScaleWorkloadRef(replicas=max(0, p.spec.replicas_or_default() - available)))


def _progress_deadline(p: Pass) -> None:
    """No replica progress for progressDeadlineSeconds while waiting on replicas → Degraded (and abort if asked)."""
    marker = "|".join(
        [p.new_hash, str(p.status.current_step_index)]
        + [f"{r.hash}:{r.replicas}/{r.ready}/{r.available}" for r in sorted(p.obs.revisions.values(), key=_by_hash)]
    )
    if not p.waiting_on_replicas or p.status.abort:
        if p.status.progress_since is not None or p.status.deadline_exceeded:
            p.update(progress_marker="", progress_since=None, deadline_exceeded=False)
        return
    if marker != p.status.progress_marker or p.status.progress_since is None:
        p.update(progress_marker=marker, progress_since=p.now, deadline_exceeded=False)
    deadline = (p.status.progress_since or p.now) + timedelta(seconds=p.spec.progress_deadline())
    if p.now < deadline:
        p.wake_at(deadline)
        return
    if not p.status.deadline_exceeded:
        message = f"Revision {p.new_hash} has timed out progressing."
        p.update(deadline_exceeded=True)
        p.set_condition("Progressing", False, "ProgressDeadlineExceeded", message)
        p.event(EventType.WARNING, "ProgressDeadlineExceeded", message)
        if p.spec.progress_deadline_abort and p.new_hash != p.status.stable_rs:
            p.request_abort(message)
            canary.abort(p) if p.spec.strategy.canary is not None else bluegreen.abort(p)


def _by_hash(revision: object) -> str:
    return str(getattr(revision, "hash", ""))


def _summarise(p: Pass) -> None:
    """Replica counters, phase and message (Argo's GetRolloutPhase rules, in the same order)."""
    revisions = list(p.obs.revisions.values())
    new = p.revision(p.new_hash)
    p.update(
        replicas=sum(r.replicas for r in revisions),
        updated_replicas=new.replicas if new is not None else 0,
        ready_replicas=sum(r.ready for r in revisions),
        available_replicas=sum(r.available for r in revisions),
    )
    progressing = p.status.condition("Progressing")
    if p.status.abort:
        phase, message = Phase.DEGRADED, f"RolloutAborted: {progressing.message if progressing else 'aborted'}"
    elif p.status.deadline_exceeded:
        phase, message = Phase.DEGRADED, f"ProgressDeadlineExceeded: {progressing.message if progressing else ''}"
    elif p.spec.paused:
        phase, message = Phase.PAUSED, "manually paused"
    elif p.status.pause_conditions:
        phase, message = Phase.PAUSED, ", ".join(c.reason.value for c in p.status.pause_conditions)
    elif p.new_hash != p.status.stable_rs or p.waiting_for:
        phase, message = Phase.PROGRESSING, p.waiting_for or "waiting for rollout to finish steps"
    else:
        phase, message = Phase.HEALTHY, ""
    if phase != p.status.phase and phase == Phase.HEALTHY:
        p.set_condition("Healthy", True, "RolloutHealthy", "Rollout is healthy")
    elif phase != Phase.HEALTHY:
        p.set_condition("Healthy", False, "RolloutHealthyFalse", message)
    p.update(phase=phase, message=message)
    p.status = readiness.with_readiness(p.status, generation=p.rollout.metadata.generation, now=p.now)
