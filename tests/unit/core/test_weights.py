"""Replica arithmetic for canaries, checked against Argo Rollouts' own worked examples.

Row sources (argoproj/argo-rollouts):
- the doc comment on ``CalculateReplicaCountsForBasicCanary`` (``utils/replicaset/canary.go``), ids ``doc-*``;
- ``TestCalculateReplicaCountsForCanary``, ``TestCalculateReplicaCountsForNewDeployment``,
  ``TestCalculateReplicaCountsForCanaryStableRSdEdgeCases``, ``TestCalculateReplicaCountsForCanaryTrafficRouting``,
  ``TestCalculateReplicaCountsForCanaryTrafficRoutingDynamicScale``, ``TestApproximateWeightedNewStableReplicaCounts``
  and ``TestTrafficWeightToReplicas`` (``utils/replicaset/canary_test.go``), ids named after the Go test case;
- the doc comment on ``resolveFenceposts`` (``utils/replicaset/replicaset.go``), ids ``fencepost-doc-*``.
Rows with ids starting ``ours-`` are our own.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headway.core.weights import (
    RSCounts,
    approximate_canary_stable_counts,
    basic_canary_counts,
    min_pods,
    replicas_for_weight,
    resolve_fenceposts,
    scaled_value,
    traffic_routed_canary_counts,
)


def rs(replicas: int, available: int) -> RSCounts:
    return RSCounts(replicas=replicas, available=available)


# --- basic canary (no traffic routing) ------------------------------------------------------------------


class Basic(NamedTuple):
    name: str
    replicas: int
    weight: int
    max_surge: int | str | None
    max_unavailable: int | str | None
    new: RSCounts | None
    stable: RSCounts | None
    expected: tuple[int, int]  # (canary, stable)
    others: tuple[RSCounts, ...] = ()
    canary_replicas: int | None = None


BASIC_ROWS = [
    # The doc comment of CalculateReplicaCountsForBasicCanary: new RS 0, stable RS fully scaled and available.
    Basic("doc-r10-w10-unavail1-surge1", 10, 10, 1, 1, rs(0, 0), rs(10, 10), (1, 9)),
    Basic("doc-r10-w30-unavail0-surge3", 10, 30, 3, 0, rs(0, 0), rs(10, 10), (3, 10)),
    Basic("doc-r10-w30-unavail5-surge0", 10, 30, 0, 5, rs(0, 0), rs(10, 10), (0, 7)),
    # The comment says stable 9, but Argo's code (old ceil/ceil and current closest-split alike) gives 10:
    # 1 canary of 11 pods (9.1%) is nearer 5% than 1 of 10, so the stable keeps its 10 and the canary surges.
    Basic("doc-r10-w5-unavail1-surge1-stale-comment", 10, 5, 1, 1, rs(0, 0), rs(10, 10), (1, 10)),
    Basic("doc-r1-w5-unavail0-surge1", 1, 5, 1, 0, rs(0, 0), rs(1, 1), (1, 1)),
    Basic("doc-r1-w95-unavail0-surge1", 1, 95, 1, 0, rs(0, 0), rs(1, 1), (1, 1)),
    # TestCalculateReplicaCountsForCanary (basic rows).
    Basic("extra-available-not-counted-for-scale-down", 10, 100, 3, 0, rs(6, 3), rs(7, 8), (6, 7)),
    Basic("max-surge-int-scales-up-canary", 10, 20, 2, 0, rs(0, 0), rs(10, 10), (2, 10)),
    Basic("max-surge-percent-scales-up-canary", 10, 20, "20%", 0, rs(0, 0), rs(10, 10), (2, 10)),
    Basic("scale-down-extra-stable", 10, 20, "20%", 0, rs(2, 2), rs(10, 10), (2, 8)),
    Basic("do-not-go-past-max-surge", 10, 30, 2, 0, rs(0, 0), rs(10, 10), (2, 10)),
    Basic("max-unavailable-int-scales-down-stable", 10, 20, 0, 2, rs(0, 0), rs(10, 10), (0, 8)),
    Basic("max-unavailable-percent-scales-down-stable", 10, 20, 0, "20%", rs(0, 0), rs(10, 10), (0, 8)),
    Basic("do-not-go-past-max-unavailable", 10, 30, 0, 2, rs(0, 0), rs(10, 10), (0, 8)),
    Basic("max-surge-and-max-unavailable", 10, 50, 2, 1, rs(0, 0), rs(10, 10), (2, 9)),
    Basic("weight-0-scales-canary-to-zero", 10, 0, 1, 1, rs(1, 1), rs(10, 10), (0, 10)),
    Basic("weight-100-scales-stable-to-zero", 10, 100, 1, 1, rs(10, 10), rs(1, 1), (10, 0)),
    Basic("non-zero-weight-keeps-a-canary-pod", 1, 20, 1, 0, rs(0, 0), rs(1, 1), (1, 1)),
    Basic("non-100-weight-keeps-a-stable-pod", 1, 90, 1, 0, rs(0, 0), rs(1, 1), (1, 1)),
    Basic("scale-up-stable-before-canary", 10, 30, 1, 0, rs(0, 0), rs(1, 1), (1, 7), others=(rs(3, 3),)),
    Basic("scale-down-canary-and-stable", 10, 30, 0, 3, rs(4, 4), rs(8, 5), (3, 7)),
    Basic("scale-down-limited-by-availability", 10, 100, 1, 0, rs(10, 8), rs(10, 2), (9, 2)),
    Basic(
        "older-rs-scaled-down-first",
        10,
        30,
        0,
        1,
        rs(4, 2),
        rs(8, 6),
        (4, 8),
        others=(rs(3, 3),),
    ),
    Basic("uneven-weight-does-not-round-past-surge-0", 10, 5, 0, 1, rs(0, 0), rs(10, 10), (0, 9)),
    Basic("uneven-weight-does-not-round-past-surge-0-part2", 10, 5, 0, 1, rs(0, 0), rs(9, 9), (1, 9)),
    Basic("both-fenceposts-0-percent-unavailable-becomes-1", 10, 10, "0%", "0%", rs(0, 0), rs(10, 10), (0, 9)),
    Basic("surge-honoured-when-stable-unavailable", 4, 100, 1, 0, rs(0, 0), rs(4, 1), (1, 4)),
    Basic("scale-down-to-max-unavailable-within-surge", 3, 99, 0, 2, rs(0, 0), rs(3, 3), (0, 1)),
    Basic("scale-down-to-max-unavailable-within-surge-part2", 3, 99, 0, 2, rs(0, 0), rs(1, 1), (2, 1)),
    Basic("unavailable-honoured-when-stable-unavailable", 4, 100, 1, 0, rs(1, 1), rs(4, 1), (1, 3)),
    Basic("abort-surges-stable-before-dropping-canary", 4, 0, 1, 0, rs(4, 4), rs(0, 0), (4, 1)),
    Basic("abort-waits-for-stable-availability", 4, 0, 1, 0, rs(4, 4), rs(1, 0), (4, 1)),
    Basic("abort-drops-canary-by-max-unavailable", 4, 0, 1, 0, rs(4, 4), rs(1, 1), (3, 1)),
    Basic("promote-full-ignores-step-weight", 4, 100, 4, 4, rs(0, 0), rs(4, 4), (4, 0)),
    Basic("promote-full-honours-surge-and-unavailable", 4, 100, 3, 0, rs(0, 0), rs(4, 4), (3, 4)),
    # TestCalculateReplicaCountsForCanaryStableRSdEdgeCases / ...ForNewDeployment: no distinct stable RS.
    Basic("no-stable-rs-goes-to-full-replicas", 10, 10, 0, 1, rs(9, 9), None, (10, 0)),
    Basic("stable-is-new-rs-goes-to-full-replicas", 10, 10, 0, 1, rs(10, 0), None, (10, 0)),
    # Ours.
    Basic("ours-new-rs-not-created-yet", 10, 10, 1, 1, None, rs(10, 10), (1, 9)),
    Basic("ours-defaults-25-percent", 10, 50, None, None, rs(0, 0), rs(10, 10), (3, 8)),
    Basic("ours-set-canary-scale-replicas", 10, 20, 1, 0, rs(0, 0), rs(10, 10), (3, 10), canary_replicas=3),
    Basic("ours-empty-older-rs-does-not-block", 10, 10, 1, 1, rs(0, 0), rs(10, 10), (1, 9), others=(rs(0, 2),)),
    Basic("ours-older-rs-takes-surge-headroom", 10, 50, 2, 0, rs(0, 0), rs(10, 10), (0, 10), others=(rs(2, 2),)),
    Basic("ours-zero-replicas", 0, 50, 1, 1, rs(0, 0), rs(0, 0), (0, 0)),
    Basic("ours-steady-state-is-fixed-point", 10, 30, 1, 1, rs(3, 3), rs(7, 7), (3, 7)),
]


@pytest.mark.parametrize("row", BASIC_ROWS, ids=[row.name for row in BASIC_ROWS])
def test_basic_canary_counts(row: Basic) -> None:
    got = basic_canary_counts(
        replicas=row.replicas,
        weight=row.weight,
        max_surge=row.max_surge,
        max_unavailable=row.max_unavailable,
        new=row.new,
        stable=row.stable,
        others=row.others,
        canary_replicas=row.canary_replicas,
    )
    assert got == row.expected


# --- traffic-routed canary ---------------------------------------------------------------------------------


class Routed(NamedTuple):
    name: str
    replicas: int
    canary_weight: int
    stable_weight: int | None
    expected: tuple[int, int]  # (canary, stable)
    canary_scale_weight: int | None = None
    canary_replicas: int | None = None
    dynamic_stable_scale: bool = False
    min_pods_per_replicaset: int | None = None
    aborted: bool = False


ROUTED_ROWS = [
    # TestCalculateReplicaCountsForCanary (trafficRouting rows; Argo passes no live weights there).
    Routed("set-canary-scale-replicas-ignores-set-weight", 1, 100, None, (9, 1), canary_replicas=9),
    Routed("set-canary-scale-weight-ignores-set-weight", 4, 100, None, (8, 4), canary_scale_weight=200),
    Routed("match-traffic-weight-uses-set-weight", 10, 20, None, (2, 10)),
    Routed("aborted-abort-delay-0-keeps-set-canary-scale", 1, 0, None, (1, 1), canary_replicas=1, aborted=True),
    Routed("aborted-abort-delay-30-drops-set-canary-scale", 1, 0, None, (0, 1), aborted=True),
    Routed("min-pods-per-replicaset-on-start", 10, 5, None, (2, 10), min_pods_per_replicaset=2),
    # TestCalculateReplicaCountsForCanaryTrafficRouting.
    Routed("stable-stays-fully-scaled", 10, 10, None, (1, 10)),
    # TestCalculateReplicaCountsForCanaryTrafficRoutingDynamicScale.
    Routed("dynamic-scales-down-stable", 10, 10, 90, (1, 9), dynamic_stable_scale=True),
    Routed("dynamic-desired-canary-above-actual", 10, 20, 90, (2, 9), dynamic_stable_scale=True),
    Routed(
        "dynamic-abort-keeps-canary-while-it-has-traffic", 10, 20, 80, (2, 10), dynamic_stable_scale=True, aborted=True
    ),
    Routed(
        "dynamic-abort-reduces-canary-with-its-traffic", 10, 20, 90, (1, 10), dynamic_stable_scale=True, aborted=True
    ),
    # Ours.
    Routed("ours-dynamic-live-weight-unknown", 10, 30, None, (3, 7), dynamic_stable_scale=True),
    Routed("ours-dynamic-stable-grows-before-traffic-returns", 10, 20, 50, (2, 8), dynamic_stable_scale=True),
    Routed("ours-dynamic-min-pods-both", 10, 95, 5, (10, 2), dynamic_stable_scale=True, min_pods_per_replicaset=2),
    Routed(
        "ours-dynamic-min-pods-keeps-zero", 10, 100, 0, (10, 0), dynamic_stable_scale=True, min_pods_per_replicaset=2
    ),
    Routed("ours-abort-without-dynamic-drops-canary", 10, 50, 50, (0, 10), aborted=True),
    Routed(
        "ours-dynamic-stable-follows-traffic-not-scale",
        10,
        20,
        80,
        (5, 8),
        canary_replicas=5,
        dynamic_stable_scale=True,
    ),
    Routed(
        "ours-min-pods-not-applied-to-explicit-replicas",
        10,
        20,
        None,
        (1, 10),
        canary_replicas=1,
        min_pods_per_replicaset=3,
    ),
]


@pytest.mark.parametrize("row", ROUTED_ROWS, ids=[row.name for row in ROUTED_ROWS])
def test_traffic_routed_canary_counts(row: Routed) -> None:
    got = traffic_routed_canary_counts(
        replicas=row.replicas,
        canary_weight=row.canary_weight,
        stable_weight=row.stable_weight,
        canary_scale_weight=row.canary_scale_weight,
        canary_replicas=row.canary_replicas,
        dynamic_stable_scale=row.dynamic_stable_scale,
        min_pods_per_replicaset=row.min_pods_per_replicaset,
        aborted=row.aborted,
    )
    assert got == row.expected


# --- closest canary/stable split (TestApproximateWeightedNewStableReplicaCounts) ---------------------------

# (replicas, weight, max_surge, canary, stable)
APPROX_ROWS = [
    (0, 0, 0, 0, 0), (0, 50, 0, 0, 0), (0, 100, 0, 0, 0),
    (0, 0, 1, 0, 0), (0, 50, 1, 0, 0), (0, 100, 1, 0, 0),
    (1, 0, 0, 0, 1), (1, 1, 0, 0, 1), (1, 49, 0, 0, 1), (1, 50, 0, 1, 0), (1, 99, 0, 1, 0), (1, 100, 0, 1, 0),
    (1, 0, 1, 0, 1), (1, 1, 1, 1, 1), (1, 49, 1, 1, 1), (1, 50, 1, 1, 1), (1, 99, 1, 1, 1), (1, 100, 1, 1, 0),
    (2, 0, 0, 0, 2), (2, 1, 0, 1, 1), (2, 50, 0, 1, 1), (2, 99, 0, 1, 1), (2, 100, 0, 2, 0),
    (2, 0, 1, 0, 2), (2, 1, 1, 1, 2), (2, 50, 1, 1, 1), (2, 99, 1, 2, 1), (2, 100, 1, 2, 0),
    (3, 10, 0, 1, 2), (3, 25, 0, 1, 2), (3, 33, 0, 1, 2), (3, 34, 0, 1, 2), (3, 49, 0, 1, 2), (3, 50, 0, 2, 1),
    (3, 10, 1, 1, 3), (3, 25, 1, 1, 3), (3, 33, 1, 1, 2), (3, 34, 1, 1, 2), (3, 49, 1, 2, 2), (3, 50, 1, 2, 2),
    (10, 0, 1, 0, 10), (10, 1, 0, 1, 9), (10, 14, 0, 1, 9), (10, 15, 0, 2, 8), (10, 16, 0, 2, 8),
    (10, 99, 0, 9, 1), (10, 100, 1, 10, 0),
    (10, 1, 1, 1, 10), (10, 18, 1, 2, 9), (10, 19, 1, 2, 9), (10, 20, 1, 2, 8), (10, 23, 1, 2, 8),
    (10, 24, 1, 3, 8), (10, 25, 1, 3, 8), (10, 99, 1, 10, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("replicas", "weight", "max_surge", "canary", "stable"),
    APPROX_ROWS,
    ids=[f"r{r}-w{w}-surge{s}" for r, w, s, _, _ in APPROX_ROWS],
)
def test_approximate_canary_stable_counts(replicas: int, weight: int, max_surge: int, canary: int, stable: int) -> None:
    assert approximate_canary_stable_counts(replicas, weight, max_surge) == (canary, stable)


# --- fenceposts, percentages, weights, minimum pods --------------------------------------------------------

FENCEPOST_ROWS = [
    # resolveFenceposts doc comment: the first two scale old first (unavailable 1), the rest surge first.
    ("fencepost-doc-2-unavail1pct-surge0pct", "0%", "1%", 2, (0, 1)),
    ("fencepost-doc-1-unavail1pct-surge0pct", "0%", "1%", 1, (0, 1)),
    ("fencepost-doc-2-unavail25pct-surge1pct", "1%", "25%", 2, (1, 0)),
    ("fencepost-doc-1-unavail25pct-surge1pct", "1%", "25%", 1, (1, 0)),
    ("fencepost-doc-2-unavail0pct-surge1pct", "1%", "0%", 2, (1, 0)),
    ("fencepost-doc-1-unavail0pct-surge1pct", "1%", "0%", 1, (1, 0)),
    ("defaults-25pct-of-10", None, None, 10, (3, 2)),
    ("defaults-25pct-of-1", None, None, 1, (1, 0)),
    ("bare-number-string-is-percent", "25", "25", 10, (3, 2)),
    ("ints-pass-through", 2, 1, 10, (2, 1)),
    ("both-int-zero-unavailable-becomes-1", 0, 0, 10, (0, 1)),
    ("both-percent-round-to-zero", "0%", "9%", 10, (0, 1)),
]


@pytest.mark.parametrize(
    ("max_surge", "max_unavailable", "desired", "expected"),
    [row[1:] for row in FENCEPOST_ROWS],
    ids=[row[0] for row in FENCEPOST_ROWS],
)
def test_resolve_fenceposts(
    max_surge: int | str | None, max_unavailable: int | str | None, desired: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(max_surge, max_unavailable, desired) == expected


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        ("20%", 10, True, 2),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("150%", 3, True, 5),
        (3, 10, False, 3),
        (None, 10, True, 0),
    ],
    ids=["exact", "surge-rounds-up", "unavailable-rounds-down", "over-100-percent", "int", "none-is-zero"],
)
def test_scaled_value(value: int | str | None, total: int, round_up: bool, expected: int) -> None:
    assert scaled_value(value, total, round_up=round_up) == expected


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(10, 0, 0), (10, 20, 2), (10, 25, 3), (10, 33, 4), (10, 99, 10), (10, 100, 10), (10, 12.5, 2), (4, 200, 8)],
    ids=["w0", "w20", "w25-rounds-up", "w33-rounds-up", "w99", "w100", "fractional-weight", "over-100"],
)
def test_replicas_for_weight(total: int, weight: float, expected: int) -> None:
    assert replicas_for_weight(total, weight) == expected


@pytest.mark.parametrize(
    ("count", "weight", "minimum", "expected"),
    [(1, 5, 2, 2), (3, 50, 2, 3), (0, 5, 2, 0), (1, 0, 2, 1), (1, 5, None, 1)],
    ids=["raised-to-minimum", "already-above", "zero-stays-zero", "no-weight-no-minimum", "unset"],
)
def test_min_pods(count: int, weight: int, minimum: int | None, expected: int) -> None:
    assert min_pods(count, weight, minimum) == expected


def test_impossible_inputs_raise() -> None:
    with pytest.raises(ValueError, match="replicas"):
        RSCounts(replicas=-1, available=0)
    with pytest.raises(ValueError, match="replicas"):
        basic_canary_counts(replicas=-1, weight=0, max_surge=1, max_unavailable=0, new=None, stable=None)
    with pytest.raises(ValueError, match="replicas"):
        traffic_routed_canary_counts(replicas=-1, canary_weight=0, stable_weight=None)
    with pytest.raises(ValueError, match="percentage"):
        scaled_value("a quarter", 10, round_up=True)


# --- properties --------------------------------------------------------------------------------------------

fencepost = st.one_of(st.integers(0, 5), st.integers(0, 100).map(lambda p: f"{p}%"))
counts = st.builds(RSCounts, replicas=st.integers(0, 30), available=st.integers(0, 30))


@given(
    replicas=st.integers(0, 30),
    weight=st.integers(0, 100),
    max_surge=fencepost,
    max_unavailable=fencepost,
    new=counts,
    stable=st.one_of(st.none(), counts),
    others=st.lists(counts, max_size=2),
)
def test_basic_never_negative_and_never_surges_past_limit(
    replicas: int,
    weight: int,
    max_surge: int | str,
    max_unavailable: int | str,
    new: RSCounts,
    stable: RSCounts | None,
    others: list[RSCounts],
) -> None:
    canary, stable_count = basic_canary_counts(
        replicas=replicas,
        weight=weight,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
        new=new,
        stable=stable,
        others=others,
    )
    surge, _ = resolve_fenceposts(max_surge, max_unavailable, replicas)
    before = new.replicas + (stable.replicas if stable else 0) + sum(o.replicas for o in others)
    after = canary + stable_count + sum(o.replicas for o in others)
    assert canary >= 0
    assert stable_count >= 0
    assert after <= max(before, replicas + surge)


@given(
    replicas=st.integers(1, 25),
    weight=st.integers(0, 100),
    max_surge=fencepost,
    max_unavailable=fencepost,
)
def test_basic_converges_to_closest_split_when_pods_become_available(
    replicas: int, weight: int, max_surge: int | str, max_unavailable: int | str
) -> None:
    surge, _ = resolve_fenceposts(max_surge, max_unavailable, replicas)
    target = approximate_canary_stable_counts(replicas, weight, surge)
    new, stable = rs(0, 0), rs(replicas, replicas)
    for _ in range(4 * replicas + 4):
        got = basic_canary_counts(
            replicas=replicas,
            weight=weight,
            max_surge=max_surge,
            max_unavailable=max_unavailable,
            new=new,
            stable=stable,
        )
        if got == (new.replicas, stable.replicas) == target:
            return
        new, stable = rs(got[0], got[0]), rs(got[1], got[1])
    pytest.fail(f"did not reach {target}; stuck at {(new.replicas, stable.replicas)}")


@given(replicas=st.integers(0, 1000), weight=st.integers(0, 100), max_surge=st.integers(0, 3))
def test_approximate_split_keeps_both_sides_and_stays_within_one_extra(
    replicas: int, weight: int, max_surge: int
) -> None:
    canary, stable = approximate_canary_stable_counts(replicas, weight, max_surge)
    assert replicas <= canary + stable <= replicas + (1 if max_surge else 0)
    if 0 < weight < 100 and (replicas > 1 or (replicas == 1 and max_surge > 0)):
        assert canary > 0
        assert stable > 0


@given(
    replicas=st.integers(0, 200),
    canary_weight=st.integers(0, 100),
    stable_weight=st.one_of(st.none(), st.integers(0, 100)),
    minimum=st.one_of(st.none(), st.integers(1, 5)),
    aborted=st.booleans(),
)
def test_traffic_routed_covers_all_traffic(
    replicas: int, canary_weight: int, stable_weight: int | None, minimum: int | None, aborted: bool
) -> None:
    fixed = traffic_routed_canary_counts(
        replicas=replicas,
        canary_weight=canary_weight,
        stable_weight=stable_weight,
        min_pods_per_replicaset=minimum,
        aborted=aborted,
    )
    assert fixed[1] == replicas
    canary, stable = traffic_routed_canary_counts(
        replicas=replicas,
        canary_weight=canary_weight,
        stable_weight=stable_weight,
        min_pods_per_replicaset=minimum,
        aborted=aborted,
        dynamic_stable_scale=True,
    )
    desired = 0 if aborted else canary_weight
    assert canary >= replicas_for_weight(replicas, desired)
    assert stable >= replicas_for_weight(replicas, 100 - desired)
    assert canary + stable >= replicas
    if stable_weight is not None:
        assert stable >= replicas_for_weight(replicas, stable_weight)


@given(total=st.integers(0, 10_000), percent=st.integers(0, 200))
def test_percent_rounding_brackets_the_exact_value(total: int, percent: int) -> None:
    up = scaled_value(f"{percent}%", total, round_up=True)
    down = scaled_value(f"{percent}%", total, round_up=False)
    assert down * 100 <= percent * total <= up * 100
    assert up - down in (0, 1)


@given(total=st.integers(0, 10_000), low=st.integers(0, 100), high=st.integers(0, 100))
def test_replicas_for_weight_is_monotonic(total: int, low: int, high: int) -> None:
    low, high = sorted((low, high))
    assert replicas_for_weight(total, low) <= replicas_for_weight(total, high)
    assert replicas_for_weight(total, 100) == total
