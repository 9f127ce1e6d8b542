"""The detection bench's own parts: its samplers, the Flagger/Argo check semantics, and the judge's stopping time.

The bench is a script, not a package, so it is loaded from its file.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

from headway.core.judge import JudgeConfig, JudgeVerdict, Window, judge_signals

BENCH = Path(__file__).resolve().parents[3] / "bench" / "detection.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_detection", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("n", "p"), [(1000, 0.005), (200, 0.3), (5000, 0.2)])
def test_binomial_sampler_has_the_right_mean_and_spread(bench: ModuleType, n: int, p: float) -> None:
    rng = random.Random(1)
    draws = [bench.binomial(rng, n, p) for _ in range(3000)]
    assert statistics.fmean(draws) == pytest.approx(n * p, rel=0.03)
    assert statistics.pvariance(draws) == pytest.approx(n * p * (1 - p), rel=0.12)
    assert all(0 <= d <= n for d in draws)


def test_poisson_sampler_has_the_right_mean(bench: ModuleType) -> None:
    rng = random.Random(2)
    for mean in (3.0, 1000.0):
        draws = [bench.poisson(rng, mean) for _ in range(3000)]
        assert statistics.fmean(draws) == pytest.approx(mean, rel=0.03)
        assert statistics.pvariance(draws) == pytest.approx(mean, rel=0.12)


def test_wilson_interval(bench: ModuleType) -> None:
    low, high = bench.wilson(0, 1000)
    assert low == 0.0 and 0.003 < high < 0.004
    low, high = bench.wilson(10, 1000)
    assert low < 0.01 < high


def rollout(bench: ModuleType, failing_minutes: set[int], minutes: int = 12) -> object:
    """A rollout whose canary errs 5% in the given minutes and never otherwise."""
    errors, slow = [], []
    for k in range(minutes * bench.CHECK_WINDOWS):
        bad = 5 if k // bench.CHECK_WINDOWS in failing_minutes else 0
        errors.append(Window(100, bad, 900, 0))
        slow.append(Window(100, 0, 900, 0))
    return bench.Rollout(errors, slow, onset_window=0)


def test_flagger_rolls_back_at_the_fifth_failed_check_counting_all_failures(bench: ModuleType) -> None:
    r = rollout(bench, {0, 2, 4, 6, 8})
    assert bench.flagger_method(r) == 9 * bench.CHECK_WINDOWS - 1
    assert bench.flagger_method(rollout(bench, {0, 2, 4, 6})) is None


def test_argo_with_failure_limit_one_aborts_at_the_second_failed_measurement(bench: ModuleType) -> None:
    assert bench.argo_method(rollout(bench, {3})) is None
    assert bench.argo_method(rollout(bench, {3, 7})) == 8 * bench.CHECK_WINDOWS - 1


def test_judge_stopping_time_is_the_first_window_that_fails(bench: ModuleType) -> None:
    rng = random.Random(3)
    r = bench.simulate(rng, bench.Scenario("x", error_factor=10.0))
    config = JudgeConfig()
    found = bench.judge_method(r, config)
    linear = next(
        k
        for k in range(len(r.errors))
        if judge_signals({"errors": r.errors[: k + 1], "slow": r.slow[: k + 1]}, config).verdict is JudgeVerdict.FAIL
    )
    assert found == linear


def test_simulated_traffic_follows_the_weight_steps_and_the_onset(bench: ModuleType) -> None:
    rng = random.Random(4)
    r = bench.simulate(rng, bench.Scenario("x", error_factor=10.0, onset=(300.0, 300.0)))
    assert len(r.errors) == bench.WINDOWS and r.onset_window == 30
    per_step = bench.WINDOWS // len(bench.STEPS)
    for index, (weight, _) in enumerate(bench.STEPS):
        span = r.errors[index * per_step : (index + 1) * per_step]
        share = sum(w.canary_requests for w in span) / sum(w.canary_requests + w.stable_requests for w in span)
        assert share == pytest.approx(weight, rel=0.1)
    before = r.errors[: r.onset_window]
    after = r.errors[r.onset_window : per_step]
    rate = [sum(w.canary_bad for w in s) / sum(w.canary_requests for w in s) for s in (before, after)]
    assert rate[1] > 4 * rate[0]
