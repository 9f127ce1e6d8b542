"""The canary strategy: walk the steps, size the revisions, shift traffic, promote or abort.

Each pass is level-based: from the step index in status and what is observed, work out which steps are complete
(possibly several in one pass), then set replicas and weight for the step reached. Traffic never runs ahead of
capacity: with a router, the weight of a setWeight step is applied only once the canary has the replicas for it
(until then the previous step's weight holds, as in Argo), so no user request is sent to a pod that is not there.
"""

from __future__ import annotations

from datetime import timedelta

from headway.core import gates, runs, steps, weights
from headway.core.actions import (
    CreateRevision,
    RemoveManagedRoutes,
    RunKind,
    ScaleRevision,
    ServiceRole,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    SwitchService,
)
from headway.core.decision import EventType
from headway.core.passes import Pass
from headway.spec.base import parse_duration
from headway.spec.rollout import CanaryStep, CanaryStrategy
from headway.spec.status import PauseReason, TrafficWeights, WeightDestination


def strategy(p: Pass) -> CanaryStrategy:
    canary = p.spec.strategy.canary
    if canary is None:  # pragma: no cover - decide dispatches on it
        raise ValueError("not a canary rollout")
    return canary


def routed(p: Pass) -> bool:
    return strategy(p).traffic_routing is not None


# --- replicas and weights --------------------------------------------------------------------------------------


def max_weight(p: Pass) -> int:
    """The router's full scale: weights run 0..maxTrafficWeight (default 100), as in Argo."""
    routing = strategy(p).traffic_routing
    return routing.max_weight() if routing is not None else 100


def percent(p: Pass, weight: int) -> int:
    """A weight in router units as a percentage for replica arithmetic, rounded up (never too few pods)."""
    full = max_weight(p)
    return min(100, -(-weight * 100 // full))


def desired_counts(p: Pass, index: int) -> tuple[int, int]:
    """(canary, stable) replicas wanted at step ``index`` given what runs now."""
    canary = strategy(p)
    replicas = p.spec.replicas_or_default()
    new = p.revision(p.new_hash)
    stable = p.revision(p.status.stable_rs)
    weight = 0 if p.status.abort else percent(p, steps.weight_at(canary.steps, index, max_weight(p)))
    if canary.traffic_routing is not None:
        scale = None
        if not (p.status.abort or p.status.promote_full):
            scale = steps.canary_scale_at(canary.steps, index)
        current = p.status.canary.weights
        return weights.traffic_routed_canary_counts(
            replicas=replicas,
            canary_weight=weight,
            stable_weight=percent(p, current.stable.weight) if current is not None else None,
            canary_scale_weight=scale.weight if scale is not None else None,
            canary_replicas=scale.replicas if scale is not None else None,
            dynamic_stable_scale=canary.dynamic_stable_scale,
            min_pods_per_replicaset=canary.min_pods_per_replica_set,
            aborted=p.status.abort,
        )
    others = [
        weights.RSCounts(replicas=r.replicas, available=r.available)
        for r in p.obs.revisions.values()
        if r.hash not in (p.new_hash, p.status.stable_rs)
    ]
    return weights.basic_canary_counts(
        replicas=replicas,
        weight=weight,
        max_surge=canary.max_surge_or_default(),
        max_unavailable=canary.max_unavailable_or_default(),
        new=weights.RSCounts(replicas=new.replicas, available=new.available) if new is not None else None,
        stable=weights.RSCounts(replicas=stable.replicas, available=stable.available) if stable is not None else None,
        others=others,
    )


def at_desired(p: Pass, counts: tuple[int, int]) -> bool:
    """Both revisions have exactly the wanted replicas, all available (Argo's AtDesiredReplicaCountsForCanary)."""
    canary_count, stable_count = counts
    new = p.revision(p.new_hash)
    stable = p.revision(p.status.stable_rs)
    if new is None or new.replicas != canary_count or new.available != canary_count:
        return False
    if stable is None or stable.replicas != stable_count or stable.available != stable_count:
        return False
    if not routed(p):
        # Without a router, traffic follows pods: older revisions must be gone before a step is done.
        return all(r.available == 0 for r in p.obs.revisions.values() if r.hash not in (p.new_hash, p.status.stable_rs))
    return True


def canary_ready(p: Pass, canary_count: int) -> bool:
    """The canary has all the pods the step asks for: only then may its weight grow (zero downtime)."""
    new = p.revision(p.new_hash)
    return new is not None and new.replicas == canary_count and new.available >= canary_count


def scale_to(p: Pass, counts: tuple[int, int]) -> None:
    canary_count, stable_count = counts
    if p.revision(p.new_hash) is None:
        p.act(CreateRevision(hash=p.new_hash, number=p.obs.next_revision_number(), replicas=canary_count))
    for pod_hash, count in ((p.status.stable_rs, stable_count), (p.new_hash, canary_count)):
        revision = p.revision(pod_hash)
        if pod_hash is not None and revision is not None and revision.replicas != count:
            p.act(ScaleRevision(hash=pod_hash, replicas=count))


def applied_weight(p: Pass) -> int | None:
    """The canary weight in force: read back from the router when it can, else what we last set.

    Only a router that says it cannot read back (``verified`` None and no weight: `Verification.NOT_IMPLEMENTED`)
    has its last write trusted. One that reads back and finds no weight (a route without a rule for both
    Services, an unparsable value, an unreadable data plane: ``verified`` False) reports no weight in force, so
    no step passes on the strength of a write nobody can see (fail closed).
    """
    current = p.status.canary.weights
    if current is None or current.canary.pod_template_hash != p.new_hash:
        return None
    if p.obs.router.canary_weight is not None:
        return p.obs.router.canary_weight
    if p.obs.router.verified is not None:
        return None
    return current.canary.weight


def set_weight(p: Pass, weight: int, canary_hash: str | None = None) -> None:
    """Ask the router for ``weight`` to the canary unless that is already what we set."""
    canary_hash = canary_hash or p.new_hash
    stable_hash = p.status.stable_rs
    full = max_weight(p)
    weight = min(weight, full)
    current = p.status.canary.weights
    if (
        current is not None
        and current.canary.weight == weight
        and current.canary.pod_template_hash == canary_hash
        and current.stable.pod_template_hash == (stable_hash or "")
    ):
        return
    p.act(SetWeight(canary_weight=weight, canary_hash=canary_hash, stable_hash=stable_hash))
    canary = strategy(p)
    p.update_canary(
        weights=TrafficWeights(
            canary=WeightDestination(
                weight=weight, pod_template_hash=canary_hash, service_name=canary.canary_service or ""
            ),
            stable=WeightDestination(
                weight=full - weight,
                pod_template_hash=stable_hash or "",
                service_name=canary.stable_service or "",
            ),
        )
    )
    p.progressed = True


def point_services(p: Pass, canary_hash: str) -> None:
    """Keep canaryService on the canary and stableService on the stable revision (Argo's service selectors)."""
    canary = strategy(p)
    wanted = {
        (ServiceRole.CANARY, canary.canary_service): canary_hash,
        (ServiceRole.STABLE, canary.stable_service): p.status.stable_rs,
    }
    selectors = dict(p.status.canary.selectors)
    for (role, service), pod_hash in wanted.items():
        if service and pod_hash and selectors.get(service) != pod_hash:
            p.act(SwitchService(role=role, service=service, hash=pod_hash))
            selectors[service] = pod_hash
    if selectors != p.status.canary.selectors:
        p.update_canary(selectors=selectors)


def remove_routes(p: Pass) -> None:
    if p.status.canary.header_routes or p.status.canary.mirror_routes:
        p.act(RemoveManagedRoutes())
        p.update_canary(header_routes=[], mirror_routes=[])


# --- steps -----------------------------------------------------------------------------------------------------


def _step_done(p: Pass, step: CanaryStep, index: int) -> bool:
    """Whether ``step`` (the current one) is complete; starts what it needs the first time it is reached."""
    total = len(strategy(p).steps)
    own = {PauseReason.CANARY_PAUSE_STEP} if step.pause is not None else set()
    if step.analysis is not None or step.experiment is not None:
        own = {PauseReason.INCONCLUSIVE_ANALYSIS, PauseReason.INCONCLUSIVE_EXPERIMENT}
    if p.status.pause_reasons() - own:
        p.wait("paused: " + ", ".join(sorted(r.value for r in p.status.pause_reasons())))
        return False
    if step.set_weight is not None:
        if step.set_weight > 0 and not _traffic_allowed(p):
            return False
        counts = desired_counts(p, index)
        if not at_desired(p, counts):
            p.wait(f"step {index + 1}/{total}: scaling the canary for weight {step.set_weight}", replicas=True)
            return False
        if routed(p) and applied_weight(p) != min(step.set_weight, max_weight(p)):
            p.wait(f"step {index + 1}/{total}: shifting traffic to {step.set_weight}%")
            return False
        return True
    if step.pause is not None:
        return _pause_done(p, step, index)
    if step.analysis is not None:
        record = p.status.canary.current_step_analysis_run_status
        tracked = runs.track_analysis(p, record, label=str(index), kind=RunKind.STEP, analysis=step.analysis)
        p.update_canary(current_step_analysis_run_status=tracked.record)
        return _verdict_done(p, tracked, "Step analysis run", PauseReason.INCONCLUSIVE_ANALYSIS, index)
    if step.experiment is not None:
        copies_canary = any(template.spec_ref == "canary" for template in step.experiment.templates)
        if copies_canary and p.status.canary.current_experiment is None and p.revision(p.new_hash) is None:
            # The experiment copies the canary ReplicaSet's pod template: it is created (at 0 pods) by this pass's
            # scale_to; starting the experiment now would find none and fail it (Argo creates it first, too).
            p.wait(f"step {index + 1}/{total}: creating the canary ReplicaSet the experiment copies")
            return False
        tracked = runs.track_experiment(
            p, p.status.canary.current_experiment, label=f"{index}-experiment", experiment=step.experiment
        )
        p.update_canary(current_experiment=tracked.record)
        return _verdict_done(p, tracked, "Experiment", PauseReason.INCONCLUSIVE_EXPERIMENT, index)
    if step.set_header_route is not None:
        route = step.set_header_route
        p.act(SetHeaderRoute(name=route.name, match=tuple(route.match) if route.match else None))
        names = [n for n in p.status.canary.header_routes if n != route.name]
        p.update_canary(header_routes=[*names, route.name] if route.match else names)
    elif step.set_mirror_route is not None:
        mirror = step.set_mirror_route
        p.act(
            SetMirrorRoute(
                name=mirror.name,
                match=tuple(mirror.match) if mirror.match else None,
                percentage=mirror.percentage if mirror.percentage is not None else 100,
            )
        )
        names = [n for n in p.status.canary.mirror_routes if n != mirror.name]
        p.update_canary(mirror_routes=[*names, mirror.name] if mirror.match else names)
    # A route step may carry a setCanaryScale too (Argo allows it): it is done once both are.
    # As in Argo, a setCanaryScale step is done once the canary has the pods it asks for.
    if step.set_canary_scale is not None and not at_desired(p, desired_counts(p, index)):
        p.wait(f"step {index + 1}/{total}: scaling the canary (setCanaryScale)", replicas=True)
        return False
    # plugin steps have no built-in effect yet.
    return True


def _pause_done(p: Pass, step: CanaryStep, index: int) -> bool:
    if p.resumed():
        return True
    condition = p.add_pause(PauseReason.CANARY_PAUSE_STEP, f"step {index + 1}")
    pause = step.pause
    if pause is not None and pause.duration is not None:
        end = condition.start_time + _seconds(pause.duration)
        if p.now >= end:
            return True
        p.wake_at(end)
    return False


def _verdict_done(p: Pass, tracked: runs.Tracked, what: str, reason: PauseReason, index: int) -> bool:
    total = len(strategy(p).steps)
    if tracked.verdict == runs.Verdict.PASSED:
        return True
    if tracked.verdict == runs.Verdict.FAILED:
        p.request_abort(runs.failure_message(what, tracked))
        return False
    if tracked.verdict == runs.Verdict.INCONCLUSIVE:
        if p.resumed():
            return True
        p.add_pause(reason, runs.failure_message(what, tracked))
        return False
    p.wait(f"step {index + 1}/{total}: waiting for {tracked.record.name}")
    return False


def _leave_step(p: Pass, index: int) -> None:
    canary = strategy(p)
    p.clear_pauses()
    p.update_canary(current_step_analysis_run_status=None, current_experiment=None)
    p.event(
        EventType.NORMAL,
        "RolloutStepCompleted",
        f"Rollout step {index + 1}/{len(canary.steps)} completed ({steps.describe(canary.steps[index])})",
    )
    p.progressed = True


def _seconds(duration: int | str) -> timedelta:
    return timedelta(seconds=parse_duration(duration))


# --- the strategy ----------------------------------------------------------------------------------------------


def _background(p: Pass, index: int) -> runs.Tracked | None:
    """Keep the background analysis running from ``startingStep`` on; fail → abort, inconclusive → pause.

    Returns the run as tracked this pass (None: no background analysis now), for the promotion to check."""
    background = strategy(p).analysis
    if background is None or index < (background.starting_step or 0) or p.spec.paused:
        return None
    record = p.status.canary.current_background_analysis_run_status
    if record is not None and record.status.value == "Inconclusive" and p.resumed():
        record = None  # the user resumed after an inconclusive result: measure afresh
        p.clear_pauses()
    tracked = runs.track_analysis(p, record, label="background", kind=RunKind.BACKGROUND, analysis=background)
    p.update_canary(current_background_analysis_run_status=tracked.record)
    if tracked.verdict == runs.Verdict.FAILED:
        p.request_abort(runs.failure_message("Background analysis run", tracked))
    elif tracked.verdict == runs.Verdict.INCONCLUSIVE:
        p.add_pause(PauseReason.INCONCLUSIVE_ANALYSIS, runs.failure_message("Background analysis run", tracked))
    return tracked


def progress(p: Pass) -> None:
    """A canary update in progress: new revision differs from stable."""
    canary = strategy(p)
    total = len(canary.steps)
    index = min(p.status.current_step_index or 0, total)
    if p.status.promote_full:
        index = total
    if not p.status.abort:
        asked = gates.rollback_requested(p)
        if asked is not None:
            p.request_abort(f"rollback gate {asked} asked for it")
    if not p.status.abort and gates.check(p, "confirm-rollout") != gates.Gate.OPEN:
        return  # the new revision gets no pods until confirmed
    point_services(p, p.new_hash)
    _drop_stale_step_runs(p, index)
    if not p.status.abort:
        _background(p, index)
    while not p.status.abort and not p.spec.paused and index < total:
        if not _step_done(p, canary.steps[index], index):
            break
        if index == total - 1 and not p.status.promote_full and not _promotion_confirmed(p):
            break
        _leave_step(p, index)
        index += 1
    background = _background(p, index) if not p.status.abort else None
    if p.status.abort:
        abort(p)
        return
    p.update(current_step_index=index)
    counts = desired_counts(p, index)
    if index >= total and not p.status.promote_full and not _promotion_confirmed(p):
        counts = desired_counts(p, total - 1) if total else (0, p.spec.replicas_or_default())
        scale_to(p, counts)
        return
    scale_to(p, counts)
    if routed(p):
        ready = canary_ready(p, counts[0])
        full = max_weight(p)
        target = steps.weight_at(canary.steps, index, full) if ready else steps.previous_weight(canary.steps, index)
        set_weight(p, target)
    if p.spec.paused:  # held where it is, as blue/green is: a paused rollout is not promoted either
        p.wait("manually paused")
    elif index >= total:
        _finish(p, counts, background)


def _promotion_confirmed(p: Pass) -> bool:
    return gates.check(p, "confirm-promotion") == gates.Gate.OPEN


def _traffic_allowed(p: Pass) -> bool:
    """pre-rollout gates must say yes before the canary takes any traffic; a "no" aborts the update."""
    verdict = gates.check(p, "pre-rollout", no_fails=True)
    if verdict == gates.Gate.FAILED:
        p.request_abort("a pre-rollout gate said no")
    return verdict == gates.Gate.OPEN


def _drop_stale_step_runs(p: Pass, index: int) -> None:
    """A step run that is not for the current step (promote skipped it) is stopped and forgotten."""
    record = p.status.canary.current_step_analysis_run_status
    if record is not None and not runs.belongs(record, runs.base_name(p, str(index))):
        runs.terminate_analysis(p, record)
        p.update_canary(current_step_analysis_run_status=None)
    experiment = p.status.canary.current_experiment
    if experiment is not None and not runs.belongs(experiment, runs.base_name(p, f"{index}-experiment")):
        runs.terminate_experiment(p, experiment)
        p.update_canary(current_experiment=None)


def _finish(p: Pass, counts: tuple[int, int], background: runs.Tracked | None) -> None:
    """All steps done: once the canary carries everything, it becomes the stable revision, unless a background
    analysis holds the promotion (`headway.core.runs.promotion_blocker`: never over a run that has not measured,
    is in an error streak, or is Inconclusive)."""
    blocker = runs.promotion_blocker(background) if background is not None else None
    if blocker is not None:
        p.wait(blocker)
        return
    if not at_desired(p, counts):
        p.wait("updated replicas are still becoming available", replicas=True)
        return
    if routed(p) and applied_weight(p) != max_weight(p):
        p.wait("shifting all traffic to the canary")
        return
    promote(p)


def promote(p: Pass) -> None:
    """Make the new revision stable; the old one scales down after scaleDownDelaySeconds (with a router)."""
    canary = strategy(p)
    old = p.status.stable_rs
    runs.terminate_analysis(p, p.status.canary.current_background_analysis_run_status)
    remove_routes(p)
    p.update(stable_rs=p.new_hash, promote_full=False, current_step_index=len(canary.steps))
    p.clear_pauses()
    p.update_canary(current_step_analysis_run_status=None, current_experiment=None)
    point_services(p, p.new_hash)
    if routed(p):
        set_weight(p, 0, canary_hash=p.new_hash)
    p.completed(old, canary.scale_down_delay() if routed(p) else None)


def abort(p: Pass) -> None:
    """Aborted: all traffic back to stable at full size; the canary goes after abortScaleDownDelaySeconds."""
    canary = strategy(p)
    p.record_abort_by_user()
    runs.terminate_analysis(p, p.status.canary.current_step_analysis_run_status)
    runs.terminate_analysis(p, p.status.canary.current_background_analysis_run_status)
    runs.terminate_experiment(p, p.status.canary.current_experiment)
    p.clear_pauses()
    p.update(current_step_index=0, promote_full=False)
    p.update_canary(current_step_analysis_run_status=None, current_experiment=None)
    if not routed(p):
        scale_to(p, desired_counts(p, 0))
        return
    remove_routes(p)
    set_weight(p, 0)
    canary_count, stable_count = desired_counts(p, 0)
    if not canary.dynamic_stable_scale:
        canary_count = _aborted_canary_count(p, canary.abort_scale_down_delay())
    scale_to(p, (canary_count, stable_count))


def _aborted_canary_count(p: Pass, delay: int) -> int:
    new = p.revision(p.new_hash)
    current = new.replicas if new is not None else 0
    if delay == 0 or current == 0:
        return current  # 0 keeps the canary up for debugging, as in Argo
    aborted_at = p.status.aborted_at or p.now
    deadline = aborted_at + _seconds(delay)
    if p.now >= deadline:
        return 0
    p.wake_at(deadline)
    return current


def steady(p: Pass) -> None:
    """The new revision is the stable one: full size, no canary traffic, no routes."""
    canary = strategy(p)
    p.update(current_step_index=len(canary.steps), abort=False, aborted_at=None, promote_full=False)
    p.clear_pauses()
    runs.terminate_analysis(p, p.status.canary.current_step_analysis_run_status)
    runs.terminate_analysis(p, p.status.canary.current_background_analysis_run_status)
    runs.terminate_experiment(p, p.status.canary.current_experiment)
    p.update_canary(
        current_step_analysis_run_status=None, current_background_analysis_run_status=None, current_experiment=None
    )
    point_services(p, p.new_hash)
    remove_routes(p)
    if routed(p):
        set_weight(p, 0, canary_hash=p.new_hash)
