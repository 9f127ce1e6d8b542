"""The sequential judge: false rollbacks stay under alpha while peeking at every window, regressions are found,
missing data holds, and the answer explains itself.

Traffic is simulated here with a seeded `random.Random` (the core itself has no randomness): per window a request
count, a canary share that follows weight steps, and binomial bad events at a base rate that also has incidents
hitting both revisions alike.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headway.core import judge as judge_module
from headway.core.judge import JudgeConfig, JudgeResult, JudgeVerdict, Window, judge, judge_signals


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Exact binomial draw by jumping over geometric gaps (O(n p) draws)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    log_q, count, i = math.log1p(-p), 0, 0
    while True:
        i += int(math.log(1.0 - rng.random()) / log_q) + 1
        if i > n:
            return count
        count += 1


def simulate(
    rng: random.Random,
    *,
    ratio: float = 1.0,
    windows: int = 120,
    base: float = 0.01,
    requests: int = 1000,
    weights: Sequence[float] = (0.05, 0.2, 0.5),
    onset: int = 0,
) -> list[Window]:
    """Windows of a rollout whose canary has ``ratio`` times the stable's bad-event rate from window ``onset``."""
    out = []
    incident_until = -1
    for k in range(windows):
        weight = weights[min(len(weights) - 1, k * len(weights) // windows)]
        if k > incident_until and rng.random() < 0.02:
            incident_until = k + rng.randint(2, 8)
        rate = base * (rng.uniform(4, 12) if k <= incident_until else 1.0)
        total = max(0, round(requests * rng.uniform(0.5, 1.5)))
        canary = min(total, max(0, round(total * weight * rng.uniform(0.8, 1.2))))
        stable = total - canary
        canary_rate = min(1.0, rate * (ratio if k >= onset else 1.0))
        out.append(Window(canary, binomial(rng, canary, canary_rate), stable, binomial(rng, stable, rate)))
    return out


def first_fail(windows: Sequence[Window], config: JudgeConfig | None = None) -> int | None:
    """The first window after which the judge fails, peeking at every window (the engine's calling pattern)."""
    config = config or JudgeConfig()
    for k in range(1, len(windows) + 1):
        if judge(windows[:k], config).verdict is JudgeVerdict.FAIL:
            return k - 1
    return None


# ---- validity -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "ratio", "margin", "runs", "allowed"),
    [
        pytest.param(0.01, 1.0, 1.0, 400, 8, id="alpha 1%, canary as good as stable: <= 2% of 400"),
        pytest.param(0.05, 1.0, 1.0, 400, 30, id="alpha 5%: <= 7.5% of 400"),
        pytest.param(0.05, 0.5, 1.0, 200, 10, id="canary better than stable (inside H0)"),
        pytest.param(0.05, 1.2, 1.2, 200, 15, id="canary exactly at a 1.2 margin"),
    ],
)
def test_false_rollbacks_stay_below_alpha_while_peeking_every_window(
    alpha: float, ratio: float, margin: float, runs: int, allowed: int
) -> None:
    rng = random.Random(20261129 + runs + int(100 * ratio))
    config = JudgeConfig(alpha=alpha, margin=margin)
    # The verdict looks at the running maximum of the e-value, so judging the whole history once is the same as
    # peeking after every window (checked on a subset in the next test).
    failures = sum(judge(simulate(rng, ratio=ratio), config).verdict is JudgeVerdict.FAIL for _ in range(runs))
    assert failures <= allowed, f"{failures}/{runs} healthy canaries failed at alpha={alpha}"


def test_fail_is_sticky_so_one_call_equals_peeking_at_every_window() -> None:
    rng = random.Random(7)
    config = JudgeConfig(alpha=0.2)  # loose, so that some healthy runs cross
    crossed = 0
    for _ in range(40):
        windows = simulate(rng, windows=60)
        peeked = first_fail(windows, config)
        assert (peeked is not None) == (judge(windows, config).verdict is JudgeVerdict.FAIL)
        if peeked is not None:
            crossed += 1
            assert all(judge(windows[:k], config).verdict is JudgeVerdict.FAIL for k in range(peeked + 1, 61))
    assert crossed > 0, "the loose alpha should let at least one healthy run cross, or this test checks nothing"


# ---- power ----------------------------------------------------------------------------------------------------


def test_a_10x_regression_fails_within_a_few_windows_every_time() -> None:
    rng = random.Random(10)
    exposures = []
    for _ in range(40):
        windows = simulate(rng, ratio=10.0, windows=30)
        at = first_fail(windows)
        assert at is not None and at < 15
        exposures.append(sum(w.canary_bad for w in windows[: at + 1]))
    assert sorted(exposures)[len(exposures) // 2] <= 10, exposures


def test_a_10x_spike_after_a_healthy_stretch_is_still_caught_quickly() -> None:
    rng = random.Random(11)
    delays = []
    for _ in range(30):
        windows = simulate(rng, ratio=10.0, windows=60, onset=40, weights=(0.05,))
        at = first_fail(windows)
        assert at is not None and at >= 30
        delays.append(at - 40)
    # Without the restarted e-processes the piled-up evidence against large ratios takes ~4x longer to undo.
    assert sorted(delays)[len(delays) // 2] <= 6, delays


def test_a_2x_regression_at_a_half_percent_base_is_found_in_95_percent_of_runs() -> None:
    rng = random.Random(2)
    found = 0
    for _ in range(40):
        windows = simulate(rng, ratio=2.0, base=0.005, windows=180, weights=(0.05, 0.2, 0.5))
        found += judge(windows).verdict is JudgeVerdict.FAIL
    assert found >= 38


# ---- no data is no evidence -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "reason"),
    [
        pytest.param([], "no window yet with requests on both", id="no windows"),
        pytest.param([Window(0, 0, 0, 0)] * 50, "no window yet with requests on both", id="no traffic"),
        pytest.param([Window(0, 0, 900, 40)] * 50, "no window yet with requests on both", id="no canary traffic"),
        pytest.param([Window(50, 30, 0, 0)] * 50, "no window yet with requests on both", id="no stable traffic"),
        pytest.param([Window(100, 0, 900, 0)] * 50, "no bad events on either side", id="no bad events"),
    ],
)
def test_missing_data_holds_and_never_fails(windows: list[Window], reason: str) -> None:
    result = judge(windows)
    assert result.verdict is JudgeVerdict.HOLD
    assert (result.e_value, result.p_value, result.ratio, result.lower, result.upper) == (1.0, 1.0, None, None, None)
    assert reason in result.explanation
    assert "missing data is no evidence" in result.explanation


def test_windows_without_information_change_nothing() -> None:
    rng = random.Random(3)
    windows = simulate(rng, ratio=3.0, windows=30)
    padded = []
    for w in windows:
        padded += [w, Window(0, 0, 500, 5), Window(40, 0, 500, 0)]
    # Same counts on the informative windows: same likelihood, same bounds (the restarts count windows, so the
    # e-value itself may differ a little, but not the direction of the evidence).
    a, b = judge(windows), judge(padded)
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert a.verdict == b.verdict


# ---- monotone evidence ----------------------------------------------------------------------------------------


def test_e_value_grows_with_every_window_of_bad_evidence_and_p_value_never_rises() -> None:
    bad = Window(canary_requests=100, canary_bad=10, stable_requests=900, stable_bad=9)
    results = [judge([bad] * k) for k in range(1, 12)]
    e_values = [r.e_value for r in results]
    assert all(later > earlier for earlier, later in itertools.pairwise(e_values))
    p_values = [r.p_value for r in results]
    assert all(later <= earlier for earlier, later in itertools.pairwise(p_values))
    assert results[-1].verdict is JudgeVerdict.FAIL


def test_p_value_is_one_over_the_largest_e_value_so_far() -> None:
    spike = [Window(100, 6, 900, 9)] * 3
    calm = [Window(100, 0, 900, 20)] * 20
    result = judge(spike + calm)
    peak = max(judge(spike[:k]).e_value for k in range(1, 4))
    assert result.e_value < peak
    assert result.p_value == pytest.approx(min(1.0, 1 / peak))


# ---- confidence sequence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0, 4.0])
def test_bounds_contain_the_true_ratio_in_most_runs(ratio: float) -> None:
    rng = random.Random(int(ratio * 100))
    covered = 0
    for _ in range(60):
        result = judge(simulate(rng, ratio=ratio, windows=40, weights=(0.2,)))
        assert result.lower is not None
        assert result.lower <= (result.ratio or 0.0) <= (result.upper or math.inf)
        covered += result.lower <= ratio <= (result.upper or math.inf)
    assert covered >= 57  # 99% bounds, snapped outwards to the grid: misses should be rare


def test_bounds_narrow_as_data_accumulates() -> None:
    rng = random.Random(5)
    windows = simulate(rng, windows=200, weights=(0.5,))
    early, late = judge(windows[:10]), judge(windows)
    assert early.upper is None or late.upper is not None
    assert late.upper is not None and late.lower is not None
    assert late.upper - late.lower < (early.upper or math.inf) - (early.lower or 0.0)


# ---- pass -----------------------------------------------------------------------------------------------------


def test_a_healthy_canary_passes_once_the_upper_bound_and_exposure_allow() -> None:
    rng = random.Random(6)
    windows = simulate(rng, windows=150, weights=(0.5,), base=0.02)
    result = judge(windows)
    assert result.verdict is JudgeVerdict.PASS, result.explanation
    assert result.upper is not None and result.upper < 1.5
    assert result.canary_requests >= 500


def test_no_pass_before_the_minimum_canary_exposure() -> None:
    rng = random.Random(6)
    windows = simulate(rng, windows=150, weights=(0.5,), base=0.02)
    config = JudgeConfig(min_canary_requests=10**9)
    result = judge(windows, config)
    assert result.verdict is JudgeVerdict.HOLD
    assert "< minimum 1,000,000,000" in result.explanation


# ---- explanations -----------------------------------------------------------------------------------------------


def test_fail_explanation_names_the_evidence_threshold_ratio_and_counts() -> None:
    result = judge([Window(1000, 50, 19000, 100)] * 3)
    assert result.verdict is JudgeVerdict.FAIL
    text = result.explanation
    assert text.startswith("Fail: e-value reached ")
    for part in (">= 1/alpha = 100", "against ratio <= 1", "canary/stable bad-event ratio 9.5", "99% bounds"):
        assert part in text, text
    assert "canary 150/3,000 bad, stable 300/57,000 bad" in text
    assert "\n" not in text


def test_pass_and_hold_explanations_say_what_is_missing() -> None:
    rng = random.Random(6)
    windows = simulate(rng, windows=150, weights=(0.5,), base=0.02)
    passed = judge(windows).explanation
    assert passed.startswith("Pass: upper bound ") and "< tolerated 1.5 with " in passed
    held = judge(windows[:3]).explanation
    assert held.startswith("Hold: upper bound ") and "not below tolerated 1.5" in held


# ---- several signals --------------------------------------------------------------------------------------------


def test_one_bad_signal_among_healthy_ones_fails_the_canary_and_is_named() -> None:
    rng = random.Random(8)
    errors = simulate(rng, windows=60)
    slow = simulate(rng, ratio=10.0, windows=60)
    result = judge_signals({"errors": errors, "slow": slow})
    assert result.verdict is JudgeVerdict.FAIL
    assert "worst slow: Fail" in result.explanation
    assert result.ratio is not None and result.ratio > 3


def test_averaged_signals_keep_false_rollbacks_below_alpha() -> None:
    rng = random.Random(9)
    config = JudgeConfig(alpha=0.05)
    failures = sum(
        judge_signals({"errors": simulate(rng, windows=60), "slow": simulate(rng, windows=60)}, config).verdict
        is JudgeVerdict.FAIL
        for _ in range(150)
    )
    assert failures <= 12


def test_signals_pass_only_when_every_signal_passes() -> None:
    rng = random.Random(6)
    good = simulate(rng, windows=150, weights=(0.5,), base=0.02)
    assert judge_signals({"errors": good, "slow": good}).verdict is JudgeVerdict.PASS
    assert judge_signals({"errors": good, "slow": good[:3]}).verdict is JudgeVerdict.HOLD


def test_a_signal_without_data_does_not_hide_the_numbers_of_one_with_evidence() -> None:
    windows = [Window(100, 10, 900, 9)] * 8
    result = judge_signals({"errors": windows, "slow": [Window(100, 0, 900, 0)] * 8})
    assert result.verdict is JudgeVerdict.FAIL
    assert result.canary_bad == 80 and result.ratio is not None and result.ratio > 5
    assert result.e_value == pytest.approx(judge(windows).e_value / 2 + 0.5)


def test_one_signal_is_judged_like_judge() -> None:
    windows = [Window(100, 3, 900, 9)] * 5
    assert judge_signals({"errors": windows}) == judge(windows)


def test_no_signal_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one signal"):
        judge_signals({})


# ---- input errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"canary_requests": -1}, "Window.canary_requests must be a non-negative integer"),
        ({"stable_bad": 1.5}, "Window.stable_bad must be a non-negative integer"),
        ({"canary_bad": 11}, r"Window.canary_bad \(11\) exceeds Window.canary_requests \(10\)"),
        ({"stable_bad": 21}, r"Window.stable_bad \(21\) exceeds Window.stable_requests \(20\)"),
    ],
)
def test_bad_windows_are_rejected_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"canary_requests": 10, "canary_bad": 1, "stable_requests": 20, "stable_bad": 2}
    with pytest.raises(ValueError, match=message):
        Window(**{**fields, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"margin": 0.0}, "margin"),
        ({"margin": 1000.0}, "margin"),
        ({"tolerated_ratio": -1.0}, "tolerated_ratio"),
        ({"min_canary_requests": -5}, "min_canary_requests"),
        ({"alpha": "0.01"}, "alpha"),
        ({"margin": float("nan")}, "margin"),
        ({"tolerated_ratio": float("inf")}, "tolerated_ratio"),
        ({"min_canary_requests": 10.5}, "min_canary_requests"),
        ({"min_canary_requests": True}, "min_canary_requests"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"JudgeConfig.{field} must"):
        JudgeConfig(**kwargs)  # type: ignore[arg-type]


# ---- the arithmetic against a direct reading of the definition --------------------------------------------------


def reference_log_e_path(windows: Sequence[Window], config: JudgeConfig) -> list[float]:
    """log e after every window, straight from the definition: theta_k(r) per window, no shortcuts."""
    grid = judge_module._Grid.build(config.margin, config.tolerated_ratio)
    ratios = [math.exp(s) for s in grid.log_r[grid.first :]]
    weights = grid.one_sided
    restarted = [
        i
        for i, (r, w) in enumerate(zip(ratios, weights, strict=True))
        if w > -math.inf and math.log(r / config.margin) >= judge_module.RESTART_MIN_LOG_RATIO
    ]
    starts: list[tuple[int, float]] = [(0, 1.0 - judge_module.RESTART_WEIGHT)]  # (window, weight)
    factors: list[list[float]] = []  # per window, log likelihood ratio per ratio
    path = []
    for k, w in enumerate(windows):
        if k and not k % judge_module.RESTART_EVERY:
            m = k // judge_module.RESTART_EVERY
            starts.append((k, judge_module.RESTART_WEIGHT / (m * (m + 1))))
        row = [0.0] * len(ratios)
        if (w.canary_bad + w.stable_bad) and w.canary_requests and w.stable_requests:
            pi = w.canary_requests / (w.canary_requests + w.stable_requests)

            def theta(r: float, pi: float = pi) -> float:
                return r * pi / (r * pi + 1 - pi)

            t0 = theta(config.margin)
            for j, r in enumerate(ratios):
                t = theta(r)
                row[j] = w.canary_bad * math.log(t / t0) + w.stable_bad * math.log((1 - t) / (1 - t0))
        factors.append(row)
        total = 0.0
        for start, q in starts:
            for j in range(len(ratios)):
                if weights[j] == -math.inf:
                    continue
                if start == 0:
                    prior = math.exp(weights[j])
                elif j in restarted:
                    prior = 1 / len(restarted)
                else:
                    continue
                total += q * prior * math.exp(sum(f[j] for f in factors[start:]))
        path.append(math.log(total))
    return path


@pytest.mark.parametrize("ratio", [1.0, 3.0])
def test_pruned_computation_matches_the_definition(ratio: float) -> None:
    rng = random.Random(12)
    config = JudgeConfig(margin=1.1, tolerated_ratio=1.3)
    windows = simulate(rng, ratio=ratio, windows=40, onset=20, requests=300)
    path = reference_log_e_path(windows, config)
    result = judge(windows, config)
    assert math.log(result.e_value) == pytest.approx(path[-1], abs=1e-9)
    assert result.p_value == pytest.approx(min(1.0, math.exp(-max([0.0, *path]))), rel=1e-9)


# ---- cost -----------------------------------------------------------------------------------------------------------


def test_judging_a_few_hundred_windows_is_cheap() -> None:
    rng = random.Random(13)
    windows = simulate(rng, windows=300)
    best = math.inf
    for _ in range(5):
        start = time.process_time()
        result: JudgeResult = judge(windows)
        best = min(best, time.process_time() - start)
    assert result.canary_requests > 0
    # ~1 ms on an idle 2-core CI machine; the bound is loose so that a busy machine does not make it flaky.
    assert best < 0.02, f"{1000 * best:.1f} ms for 300 windows"


# ---- any input gives a coherent answer ------------------------------------------------------------------------------


@st.composite
def windows_strategy(draw: st.DrawFn) -> list[Window]:
    out = []
    for _ in range(draw(st.integers(0, 40))):
        canary = draw(st.integers(0, 10**7))
        stable = draw(st.integers(0, 10**7))
        out.append(Window(canary, draw(st.integers(0, canary)), stable, draw(st.integers(0, stable))))
    return out


@settings(max_examples=150, deadline=None)
@given(windows=windows_strategy(), alpha=st.sampled_from([0.001, 0.01, 0.2]))
def test_any_windows_give_a_coherent_result(windows: list[Window], alpha: float) -> None:
    config = JudgeConfig(alpha=alpha)
    result = judge(windows, config)
    assert math.isfinite(result.e_value) and result.e_value >= 0.0
    assert 0.0 < result.p_value <= 1.0
    assert (result.verdict is JudgeVerdict.FAIL) == (result.p_value <= alpha * (1 + 1e-12))
    if result.lower is not None:
        assert result.lower >= 0.0 and (result.upper is None or result.upper > result.lower)
    if result.verdict is JudgeVerdict.PASS:
        assert result.upper is not None and result.upper < config.tolerated_ratio
    assert result.canary_requests == sum(w.canary_requests for w in windows)
    assert result.explanation.startswith(result.verdict.value) and "\n" not in result.explanation
