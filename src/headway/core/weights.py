"""Replica arithmetic for canary rollouts: how many pods the canary and the stable revision get next.

Pure functions, no clock, no I/O. They port the semantics (not the code) of Argo Rollouts:

- ``utils/replicaset/canary.go``: ``CalculateReplicaCountsForBasicCanary`` (with its helpers
  ``approximateWeightedCanaryStableReplicaCounts``, ``GetReplicasForScaleDown``,
  ``calculateScaleDownReplicaCount``, ``adjustReplicaWithinLimits``, ``maxValue``/``minValue``),
  ``CalculateReplicaCountsForTrafficRoutedCanary`` (dynamicStableScale, abort hold),
  ``CheckMinPodsPerReplicaSet``, ``trafficWeightToReplicas`` and the setCanaryScale part of
  ``GetCanaryReplicasOrWeight``;
- ``utils/replicaset/replicaset.go``: ``resolveFenceposts``, ``MaxSurge``, ``MaxUnavailable``;
- ``utils/defaults/defaults.go``: maxSurge and maxUnavailable both default to 25%;
- k8s ``intstr.GetValueFromIntOrPercent`` for int-or-percent values.

Argo computes with float64 and ``math.Ceil``/``math.Floor``; we use exact integer arithmetic. For the
weight-approximation step this gives the same answers as Argo (checked for every weight 0-100 and every
replica count below 2000) while avoiding float artefacts such as 25 * 0.14 = 3.5000000000000004.

Deliberate divergences from Argo (each also noted on the function concerned):

1. ``basic_canary_counts`` takes ``new=None`` as a new ReplicaSet with 0 replicas that the caller is about
   to create, so the count returned for it is the size to create it with. Argo always creates the new
   ReplicaSet (at 0) before this calculation, so its next pass computes exactly what we return now.
2. ``basic_canary_counts(canary_replicas=...)`` honours an explicit canary count, as Argo's basic canary
   did before v1.1 (``CalculateReplicaCountsForCanary``). Current Argo ignores setCanaryScale without
   trafficRouting, and its validation rejects that combination, so callers should only pass it with
   traffic routing; we honour it rather than silently dropping it.
3. With dynamicStableScale, the stable size follows the *traffic* weight (``canary_weight``). Argo sizes it
   from whatever ``GetCanaryReplicasOrWeight`` returned, so an active setCanaryScale changes the stable
   size too (weight 0 for ``replicas``, the scale weight for ``weight``), although the stable gets the
   same traffic either way.
4. During an abort the canary's live traffic share is taken as ``100 - stable_weight``. Argo reads the
   canary weight from the router; ours also counts traffic sent to experiment destinations, so it holds
   at least as many canary pods as Argo would, never fewer.
5. Percent strings without ``%`` ("25") are read as percentages, like Argo's legacy
   ``GetValueFromIntOrPercent`` (Argo's own default is the bare string "25"); other strings raise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"


@dataclass(frozen=True)
class RSCounts:
    """Observed counts of one ReplicaSet/revision."""

    replicas: int
    """Desired replicas currently set on it (ReplicaSet ``spec.replicas``)."""
    available: int
    """Available replicas (``status.availableReplicas``); may exceed ``replicas`` while scaling down."""

    def __post_init__(self) -> None:
        _require_non_negative(replicas=self.replicas, available=self.available)


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """Turn an int-or-percent value into an absolute count of ``total``.

    Ints are taken as they are; ``"N%"`` is ``N`` percent of ``total``, rounded up or down as asked
    (maxSurge rounds up, maxUnavailable rounds down, so small percentages still let a rollout move).
    ``None`` is 0, like k8s ``intstr.ValueOrDefault(nil, 0)``.
    """
    _require_non_negative(total=total)
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    percent = _parse_percent(value)
    return _div_round(percent * total, 100, round_up=round_up)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None, desired: int) -> tuple[int, int]:
    """Resolve maxSurge and maxUnavailable together into absolute ``(surge, unavailable)`` counts.

    They must be resolved in one step: surge rounds up and unavailable rounds down, and if both come out
    as 0 (e.g. 1% of 2 replicas each), unavailable becomes 1 so the rollout can still make progress
    when surging is impossible (e.g. quota). ``None`` means Argo's default of 25% for either.
    The result is not capped to ``desired``; ``basic_canary_counts`` caps unavailability as Argo's
    ``MaxUnavailable`` does.
    """
    _require_non_negative(desired=desired)
    surge = scaled_value(DEFAULT_MAX_SURGE if max_surge is None else max_surge, desired, round_up=True)
    unavailable = scaled_value(
        DEFAULT_MAX_UNAVAILABLE if max_unavailable is None else max_unavailable, desired, round_up=False
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def replicas_for_weight(total: int, weight: float) -> int:
    """Pods needed to serve ``weight`` percent of traffic out of ``total``: ``ceil(weight * total / 100)``.

    Rounds up so that any non-zero weight gets at least one pod (Argo ``trafficWeightToReplicas``).
    Weights above 100 are allowed (setCanaryScale may ask for more pods than ``spec.replicas``).
    """
    _require_non_negative(total=total, weight=weight)
    if isinstance(weight, int) or weight.is_integer():
        return _div_round(int(weight) * total, 100, round_up=True)
    return math.ceil(weight * total / 100)


def min_pods(count: int, weight: int, minimum: int | None) -> int:
    """Apply ``minPodsPerReplicaSet``: a ReplicaSet that is meant to serve traffic gets at least ``minimum``.

    Only raises the count when ``minimum`` is set, ``weight > 0`` and ``count > 0``: a ReplicaSet that
    should be scaled to zero stays at zero (Argo ``CheckMinPodsPerReplicaSet``), which matters for HA
    setups where one pod per revision is not enough while it takes traffic.
    """
    if weight <= 0:
        return count
    return _at_least(count, minimum)


def approximate_canary_stable_counts(replicas: int, weight: int, max_surge: int) -> tuple[int, int]:
    """Split ``replicas`` into ``(canary, stable)`` whose canary share is closest to ``weight`` percent.

    The two may add up to ``replicas + 1`` when surging is allowed (``max_surge > 0``) and that gets
    closer to the weight; they never exceed ``replicas`` when it is not. For weights 1-99 neither side is
    rounded to 0 (unless there is a single replica and no surge), so both revisions keep serving.
    When the floor and ceiling are equally close, the larger canary wins.
    (Argo ``approximateWeightedCanaryStableReplicaCounts``.)
    """
    _require_non_negative(replicas=replicas, weight=weight, max_surge=max_surge)
    if replicas == 0:
        return 0, 0
    up = _div_round(replicas * weight, 100, round_up=True)
    down = _div_round(replicas * weight, 100, round_up=False)
    zero_ok = weight in (0, 100) or (replicas == 1 and max_surge == 0)
    down_ok = down != 0 or zero_ok

    candidates: list[tuple[int, int]] = []  # (canary, total), in order of preference on equal distance
    if up < replicas or zero_ok:
        candidates.append((up, replicas))
    if down_ok and not _half_way(weight, replicas):
        candidates.append((down, replicas))
    if max_surge > 0:
        candidates.append((up, replicas + 1))
        if down_ok and not _half_way(weight, replicas + 1):
            candidates.append((down, replicas + 1))
    if not candidates:
        # Floor and ceiling tie and the ceiling would take every replica (25 replicas at 98%): keep the stable
        # alive with the floor rather than dropping the canary to 0. Argo has no option left here.
        return (down, replicas - down) if down_ok else (0, replicas)

    best = candidates[0]
    for candidate in candidates[1:]:
        if _closer(weight, candidate, best):
            best = candidate
    canary, total = best
    return canary, total - canary


def basic_canary_counts(
    *,
    replicas: int,
    weight: int,
    max_surge: int | str | None,
    max_unavailable: int | str | None,
    new: RSCounts | None,
    stable: RSCounts | None,
    others: Sequence[RSCounts] = (),
    canary_replicas: int | None = None,
) -> tuple[int, int]:
    """Next ``(canary, stable)`` ReplicaSet sizes for a canary without traffic routing (weight = pod share).

    One pass moves both ReplicaSets toward the split closest to ``weight`` without breaking the
    rolling-update limits:

    - scale up within maxSurge: at most ``replicas + surge`` pods in all, the stable served first (it
      carries most traffic), then the canary;
    - while older ReplicaSets (``others``) still have pods, nothing is scaled down here: those go first;
    - scale down within maxUnavailable: only as far as ``replicas - unavailable`` pods stay available.
      When the canary is growing, the stable's unavailable pods are counted as if available, so a broken
      stable (e.g. CrashLoopBackOff) cannot block the rollout; when it is shrinking (abort, lower weight),
      the same goes for the canary. Then the other ReplicaSet's target is corrected so the pair stays
      within both limits.

    ``stable=None`` (no stable yet, or stable is the new revision) means: bring the new ReplicaSet to
    ``replicas``. ``new=None`` is a new ReplicaSet with 0 replicas that the caller will create with the
    returned count (Argo creates it at 0 first; see module docstring). ``canary_replicas`` (setCanaryScale
    replicas) returns ``(canary_replicas, replicas)`` directly: stable stays fully scaled.
    (Argo ``CalculateReplicaCountsForBasicCanary``.)
    """
    _require_non_negative(replicas=replicas, weight=weight)
    if canary_replicas is not None:
        _require_non_negative(canary_replicas=canary_replicas)
        return canary_replicas, replicas

    new_rs = new if new is not None else RSCounts(replicas=0, available=0)
    surge, unavailable = resolve_fenceposts(max_surge, max_unavailable, replicas)
    unavailable = min(unavailable, replicas)  # Argo MaxUnavailable: never more than the whole rollout
    ceiling = replicas + surge
    min_available = replicas - unavailable

    if stable is None:
        want_new, want_stable = replicas, 0
    else:
        want_new, want_stable = approximate_canary_stable_counts(replicas, weight, surge)

    next_new = new_rs.replicas
    next_stable = stable.replicas if stable is not None else 0
    older = sum(rs.replicas for rs in others)

    # Scale up within maxSurge, stable first.
    headroom = ceiling - (next_new + next_stable + older)
    if stable is not None and next_stable < want_stable and headroom > 0:
        grow = min(headroom, want_stable - next_stable)
        next_stable += grow
        headroom -= grow
    if next_new < want_new and headroom > 0:
        next_new += min(headroom, want_new - next_new)

    if older > 0:
        # Older revisions are scaled down first (by the caller); leave new and stable alone until then.
        return next_new, next_stable

    # Scale down within maxUnavailable.
    increasing = want_new >= new_rs.replicas
    countable = _countable_for_scale_down(new_rs, ignore_availability=not increasing)
    countable += _countable_for_scale_down(stable, ignore_availability=increasing)
    if countable <= min_available:
        return next_new, next_stable
    budget = countable - min_available

    if not increasing:
        next_new = _drain_toward(new_rs, want_new, budget, next_new)
        next_new, next_stable = _fit_within_limits(
            new_rs, stable, next_new, next_stable, ceiling=ceiling, min_available=min_available
        )
    elif stable is not None:
        next_stable = _drain_toward(stable, want_stable, budget, next_stable)
        next_stable, next_new = _fit_within_limits(
            stable, new_rs, next_stable, next_new, ceiling=ceiling, min_available=min_available
        )
    return next_new, next_stable


def traffic_routed_canary_counts(
    *,
    replicas: int,
    canary_weight: int,
    stable_weight: int | None,
    canary_scale_weight: int | None = None,
    canary_replicas: int | None = None,
    dynamic_stable_scale: bool = False,
    min_pods_per_replicaset: int | None = None,
    aborted: bool = False,
) -> tuple[int, int]:
    """Desired ``(canary, stable)`` ReplicaSet sizes when a traffic router splits the traffic.

    The router, not the pod count, decides the split, so surge/unavailability limits do not apply: the
    canary is sized for its traffic and the stable stays at ``replicas`` until the rollout completes.

    - ``canary_replicas`` (setCanaryScale.replicas) fixes the canary size; otherwise the canary gets
      ``replicas_for_weight(replicas, canary_scale_weight or canary_weight)``, at least
      ``min_pods_per_replicaset`` when not zero.
    - ``aborted``: the desired canary traffic is 0 whatever ``canary_weight`` says (Argo's set weight on
      abort). The caller passes ``canary_replicas``/``canary_scale_weight`` during an abort only when they
      still apply (Argo: ``abortScaleDownDelaySeconds: 0``).
    - ``dynamic_stable_scale``: the stable is sized for the larger of its desired traffic
      (``100 - canary_weight``) and the traffic the router still gives it (``stable_weight``), so it
      shrinks only after traffic has left it and grows before traffic returns. During an abort the canary
      likewise keeps enough pods for the traffic the router still sends it (``100 - stable_weight``).
      ``stable_weight=None`` (unknown) means the router is taken to be at the desired weights.
      Both counts then honour ``min_pods_per_replicaset``.

    (Argo ``CalculateReplicaCountsForTrafficRoutedCanary``; divergences 3 and 4 in the module docstring.)
    """
    _require_non_negative(replicas=replicas)
    _require_percent(canary_weight=canary_weight)
    if stable_weight is not None:
        _require_percent(stable_weight=stable_weight)
    desired_weight = 0 if aborted else canary_weight

    if canary_replicas is not None:
        _require_non_negative(canary_replicas=canary_replicas)
        canary = canary_replicas
    else:
        scale_weight = desired_weight if canary_scale_weight is None else canary_scale_weight
        canary = _at_least(replicas_for_weight(replicas, scale_weight), min_pods_per_replicaset)

    if not dynamic_stable_scale:
        return canary, replicas

    stable = replicas_for_weight(replicas, 100 - desired_weight)
    if stable_weight is not None:
        stable = max(stable, replicas_for_weight(replicas, stable_weight))
        if aborted:
            canary = max(canary, replicas_for_weight(replicas, 100 - stable_weight))
    return _at_least(canary, min_pods_per_replicaset), _at_least(stable, min_pods_per_replicaset)


# --- helpers -----------------------------------------------------------------------------------------


def _require_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")


def _require_percent(**values: int) -> None:
    for name, value in values.items():
        if not 0 <= value <= 100:
            raise ValueError(f"{name} must be a traffic percentage 0-100, got {value}")


def _parse_percent(value: str) -> int:
    digits = value.strip().removesuffix("%")
    if not digits.isdigit():
        raise ValueError(f"not an int or a percentage: {value!r}")
    return int(digits)


def _div_round(numerator: int, denominator: int, *, round_up: bool) -> int:
    """Exact ``ceil``/``floor`` of ``numerator / denominator`` for non-negative ints."""
    if round_up:
        return -(-numerator // denominator)
    return numerator // denominator


def _half_way(weight: int, total: int) -> bool:
    """Whether ``weight`` percent of ``total`` ends in exactly .5: floor and ceiling are equally close."""
    return (weight * total) % 100 == 50


def _closer(weight: int, candidate: tuple[int, int], best: tuple[int, int]) -> bool:
    """Whether ``candidate`` (canary, total) is strictly closer to ``weight`` percent than ``best``."""
    cand_canary, cand_total = candidate
    best_canary, best_total = best
    # |c*100/t - w| compared exactly: |c*100 - w*t| / t, cross-multiplied.
    cand_gap = abs(cand_canary * 100 - weight * cand_total)
    best_gap = abs(best_canary * 100 - weight * best_total)
    return cand_gap * best_total < best_gap * cand_total


def _at_least(count: int, minimum: int | None) -> int:
    """``max(count, minimum)`` unless the count is 0 or no minimum is set."""
    if minimum is None or count == 0:
        return count
    return max(count, minimum)


def _countable_for_scale_down(rs: RSCounts | None, *, ignore_availability: bool) -> int:
    """Pods of ``rs`` that count as available when working out how far we may scale down.

    A ReplicaSet already scaling down (more available than desired) counts only its desired replicas:
    the extra pods are about to go. When ``ignore_availability``, unavailable pods count too, so a
    crashing ReplicaSet that must shrink is not kept alive by its own unavailability.
    (Argo ``GetReplicasForScaleDown``.)
    """
    if rs is None:
        return 0
    if rs.replicas < rs.available or ignore_availability:
        return rs.replicas
    return rs.available


def _drain_toward(rs: RSCounts, target: int, budget: int, current: int) -> int:
    """Shrink ``rs`` toward ``target`` by at most ``budget`` pods (Argo ``calculateScaleDownReplicaCount``)."""
    if rs.replicas > target:
        return max(target, rs.replicas - budget)
    return current


def _fit_within_limits(
    drained: RSCounts | None,
    adjusted: RSCounts | None,
    drained_count: int,
    adjusted_count: int,
    *,
    ceiling: int,
    min_available: int,
) -> tuple[int, int]:
    """Correct the other ReplicaSet's count so the pair respects maxSurge and maxUnavailable.

    ``drained`` is the ReplicaSet whose availability was ignored when scaling down; ``adjusted`` is the
    other one. First trim ``adjusted`` back under the surge ceiling; if that would take away available
    pods needed to stay above ``min_available``, give those back and trim ``drained`` instead.
    Returns ``(drained_count, adjusted_count)``. (Argo ``adjustReplicaWithinLimits``.)
    """
    if adjusted is None:
        return drained_count, adjusted_count
    over = max(0, adjusted_count + drained_count - ceiling)
    available = min(drained.available, drained_count) if drained is not None else 0

    adjusted_count -= over
    available += min(adjusted.available, adjusted_count)
    lost = max(0, adjusted.available - adjusted_count)  # available pods the trim took away
    short = max(0, min_available - available)
    adjusted_count += min(lost, short)

    drained_count -= max(0, adjusted_count + drained_count - ceiling)
    return drained_count, adjusted_count
