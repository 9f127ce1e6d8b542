"""Detection benchmark: the sequential judge against Flagger- and Argo-style threshold checks, on the same traffic.

Run on demand: ``.venv/bin/python bench/detection.py [--quick] [--seed N]``. Prints one JSON document.
Seeded, virtual time (no sleeps): every rollout is a list of 10-second windows of counts per revision.

Traffic model (written here; numpy is not available, so counts come from ``random``):
- total load ~100 req/s with a diurnal swing of +-50% (each rollout starts at a random time of day) and bursts
  (about one per 10 minutes, 30-120 s at 2-4x load); requests per window are Poisson, the canary's share of them
  binomial with the configured weight, bad events binomial per revision;
- a base error rate and a base share of slow requests (over the latency cut) of 0.5% each, and common-mode
  incidents (about one per hour, 1-3 minutes at 5-15x the base rates, on both revisions alike: a downstream
  outage is not the canary's fault);
- weight steps 5% -> 20% -> 50%, 10 minutes each; a rollout that is not rolled back in 30 minutes is promoted.

Methods, on identical windows:
- ``judge``: `headway.core.judge.judge_signals` over two signals (errors, slow requests), after every window;
- ``flagger``: every minute, canary success rate >= 99% and slow share <= 1% (the p99 latency check) over the
  last minute; a failed check counts, rollback at 5 failed checks (Flagger's ``threshold: 5``);
- ``argo``: every minute, ``result[0] >= 0.99`` on the canary success rate (and the same shape for the slow
  share) over the last minute; ``failureLimit: 1``, so the second failed measurement aborts.

Scenarios: healthy canaries; a 10x error spike from the canary's first request (a bad build), the same spike
starting at a random time in the first step (1-9 min, at 5% weight) and later (11-29 min, at 20-50% weight,
where every 10-s window already carries tens of failed canary requests); 2x and 1.5x error rate from the start;
2x share of slow requests from the start. Exposure is counted from the onset to the rollback.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from headway.core.judge import JudgeConfig, JudgeVerdict, Window, judge, judge_signals

WINDOW_SECONDS = 10
STEPS = ((0.05, 600), (0.20, 600), (0.50, 600))  # (canary weight, seconds)
DURATION = sum(seconds for _, seconds in STEPS)
WINDOWS = DURATION // WINDOW_SECONDS
CHECK_WINDOWS = 60 // WINDOW_SECONDS  # the threshold checks run every minute on the last minute
BASE_RPS = 100.0
BASE_ERROR = 0.005
BASE_SLOW = 0.005


@dataclass(frozen=True)
class Scenario:
    name: str
    error_factor: float = 1.0  # canary error rate / stable error rate after onset
    slow_factor: float = 1.0
    onset: tuple[float, float] | None = None  # onset drawn uniformly from this range (seconds); None: from start

    @property
    def healthy(self) -> bool:
        return self.error_factor == 1.0 and self.slow_factor == 1.0


SCENARIOS = (
    Scenario("healthy"),
    Scenario("error_spike_10x", error_factor=10.0),
    Scenario("error_spike_10x_onset_first_step", error_factor=10.0, onset=(60.0, 540.0)),
    Scenario("error_spike_10x_onset_late", error_factor=10.0, onset=(660.0, 1740.0)),
    Scenario("error_rate_2x", error_factor=2.0),
    Scenario("error_rate_1.5x", error_factor=1.5),
    Scenario("slow_share_2x", slow_factor=2.0),
)


@dataclass(frozen=True)
class Rollout:
    """One simulated rollout: per-window counts for both signals, and when the regression starts."""

    errors: list[Window]
    slow: list[Window]
    onset_window: int  # first window with the regression (0 for healthy: exposure counts from the start)


# ---- traffic generator --------------------------------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean < 30:
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n * p * (1 - p) >= 30:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
    if p > 0.5:
        return n - binomial(rng, n, 1 - p)
    # Count successes by jumping over geometric gaps: O(n p) draws instead of n.
    log_q, count, i = math.log1p(-p), 0, 0
    while True:
        i += int(math.log(1.0 - rng.random()) / log_q) + 1
        if i > n:
            return count
        count += 1


def episodes(rng: random.Random, per_second: float, duration: tuple[float, float]) -> list[tuple[float, float]]:
    """Poisson arrivals over the rollout (plus a little before it) of (start, end) episodes."""
    out: list[tuple[float, float]] = []
    t = -duration[1]
    while True:
        t += rng.expovariate(per_second)
        if t >= DURATION:
            return out
        out.append((t, t + rng.uniform(*duration)))


def simulate(rng: random.Random, scenario: Scenario) -> Rollout:
    phase = rng.uniform(0, 2 * math.pi)
    bursts = [(a, b, rng.uniform(2.0, 4.0)) for a, b in episodes(rng, 1 / 600, (30.0, 120.0))]
    incidents = [(a, b, rng.uniform(5.0, 15.0)) for a, b in episodes(rng, 1 / 3600, (60.0, 180.0))]
    onset = 0.0 if scenario.onset is None else rng.uniform(*scenario.onset)
    onset_window = int(onset // WINDOW_SECONDS)
    errors: list[Window] = []
    slow: list[Window] = []
    for k in range(WINDOWS):
        t = k * WINDOW_SECONDS
        weight = _weight_at(t)
        rate = BASE_RPS * (1 + 0.5 * math.sin(phase + 2 * math.pi * t / 86400))
        rate *= math.prod(m for a, b, m in bursts if a <= t < b)
        common = math.prod(m for a, b, m in incidents if a <= t < b)
        total = poisson(rng, rate * WINDOW_SECONDS)
        canary = binomial(rng, total, weight)
        stable = total - canary
        regressed = k >= onset_window
        p_err, p_slow = min(1.0, BASE_ERROR * common), min(1.0, BASE_SLOW * common)
        c_err = min(1.0, p_err * (scenario.error_factor if regressed else 1.0))
        c_slow = min(1.0, p_slow * (scenario.slow_factor if regressed else 1.0))
        errors.append(Window(canary, binomial(rng, canary, c_err), stable, binomial(rng, stable, p_err)))
        slow.append(Window(canary, binomial(rng, canary, c_slow), stable, binomial(rng, stable, p_slow)))
    return Rollout(errors, slow, onset_window)


def _weight_at(t: float) -> float:
    elapsed = 0
    for weight, seconds in STEPS:
        elapsed += seconds
        if t < elapsed:
            return weight
    return STEPS[-1][0]


# ---- methods: each returns the index of the window after which it rolls back, or None --------------------------


def judge_method(r: Rollout, config: JudgeConfig) -> int | None:
    """First window after which the judge says Fail (its verdict is monotone: it looks at the running maximum)."""

    def failed(k: int) -> bool:
        signals = {"errors": r.errors[: k + 1], "slow": r.slow[: k + 1]}
        return judge_signals(signals, config).verdict is JudgeVerdict.FAIL

    if not failed(len(r.errors) - 1):
        return None
    lo, hi = 0, len(r.errors) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if failed(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _checks(r: Rollout) -> list[tuple[int, bool]]:
    """(window index, passed) of the per-minute threshold checks on the canary alone, over the last minute."""
    out = []
    for end in range(CHECK_WINDOWS - 1, len(r.errors), CHECK_WINDOWS):
        span = range(end - CHECK_WINDOWS + 1, end + 1)
        requests = sum(r.errors[i].canary_requests for i in span)
        if requests == 0:
            continue  # no data: both tools report an error/no value, not a failed check
        success = 1 - sum(r.errors[i].canary_bad for i in span) / requests
        slow_share = sum(r.slow[i].canary_bad for i in span) / requests
        out.append((end, success >= 0.99 and slow_share <= 0.01))
    return out


def flagger_method(r: Rollout) -> int | None:
    failed = 0
    for end, passed in _checks(r):
        failed += not passed
        if failed >= 5:
            return end
    return None


def argo_method(r: Rollout) -> int | None:
    failed = 0
    for end, passed in _checks(r):
        failed += not passed
        if failed > 1:  # failureLimit: 1
            return end
    return None


# ---- statistics -----------------------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def exposure(r: Rollout, end: int, signal: str) -> tuple[int, int]:
    """Canary requests and canary bad events (of the regressed signal) from onset to the rollback, inclusive."""
    windows = r.slow if signal == "slow" else r.errors
    span = windows[r.onset_window : end + 1]
    return sum(w.canary_requests for w in span), sum(w.canary_bad for w in span)


def summarise(scenario: Scenario, rollouts: list[Rollout], ends: list[int | None]) -> dict[str, object]:
    n = len(ends)
    hits = [(r, e) for r, e in zip(rollouts, ends, strict=True) if e is not None and e >= r.onset_window]
    early = sum(1 for r, e in zip(rollouts, ends, strict=True) if e is not None and e < r.onset_window)
    signal = "slow" if scenario.slow_factor != 1.0 else "errors"
    requests, bad, seconds = [], [], []
    for r, e in hits:
        req, b = exposure(r, e, signal)
        requests.append(req)
        bad.append(b)
        seconds.append((e + 1 - r.onset_window) * WINDOW_SECONDS)
    lo, hi = wilson(len(hits), n)
    key = "false_rollback_rate" if scenario.healthy else "detected"
    out: dict[str, object] = {key: round(len(hits) / n, 4), f"{key}_ci95": [round(lo, 4), round(hi, 4)]}
    if not scenario.healthy:
        out["rolled_back_before_onset"] = early
        out["canary_requests_after_onset"] = {"median": _med(requests), "p90": quantile(requests, 0.9)}
        out["canary_failed_after_onset"] = {"median": _med(bad), "p90": quantile(bad, 0.9)}
        out["seconds_to_rollback"] = {"median": _med(seconds), "p90": quantile(seconds, 0.9)}
    return out


def _med(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def cpu_per_evaluation(rollouts: list[Rollout], config: JudgeConfig) -> dict[str, float]:
    """CPU time of the judge as the engine calls it: once per window over the whole history so far."""
    per_metric, combined = [], []
    for r in rollouts:
        for k in range(1, len(r.errors) + 1):
            start = time.process_time()
            judge(r.errors[:k], config)
            per_metric.append(time.process_time() - start)
            start = time.process_time()
            judge_signals({"errors": r.errors[:k], "slow": r.slow[:k]}, config)
            combined.append(time.process_time() - start)
    full = []
    for r in rollouts:
        start = time.process_time()
        judge(r.errors, config)
        full.append(time.process_time() - start)
    return {
        "per_metric_mean_ms": round(1000 * statistics.fmean(per_metric), 3),
        f"per_metric_at_{WINDOWS}_windows_median_ms": round(1000 * statistics.median(full), 3),
        "two_signals_mean_ms": round(1000 * statistics.fmean(combined), 3),
        "evaluations": len(per_metric),
    }


def targets(results: dict[str, dict[str, object]], cpu: dict[str, float]) -> dict[str, dict[str, object]]:
    """The issue's targets, each with the measured values and whether it is met."""

    def get(method: str, scenario: str, key: str, stat: str | None = None) -> float:
        node = results[method][scenario]
        assert isinstance(node, dict)
        value = node[key] if stat is None else node[key][stat]
        return math.nan if value is None else float(value)

    def ci_upper(scenario: str, key: str) -> float:
        node = results["judge"][scenario]
        assert isinstance(node, dict)
        return float(node[f"{key}_ci95"][1])

    rate, upper = get("judge", "healthy", "false_rollback_rate"), ci_upper("healthy", "false_rollback_rate")
    out: dict[str, dict[str, object]] = {
        "healthy: false rollbacks <= 1%, CI upper < 2%": {
            "rate": rate,
            "ci_upper": upper,
            "met": rate <= 0.01 and upper < 0.02,
        }
    }
    for spike in ("error_spike_10x", "error_spike_10x_onset_first_step"):
        failed = get("judge", spike, "canary_failed_after_onset", "median")
        ratio = get("flagger", spike, "canary_requests_after_onset", "median") / get(
            "judge", spike, "canary_requests_after_onset", "median"
        )
        out[f"{spike}: median failed <= 10, >= 10x less exposure than flagger"] = {
            "median_failed": failed,
            "flagger_over_judge_canary_requests": round(ratio, 1),
            "met": failed <= 10 and ratio >= 10,
        }
    detected = get("judge", "error_rate_2x", "detected")
    requests = get("judge", "error_rate_2x", "canary_requests_after_onset", "median")
    out["error_rate_2x: >= 95% detected, median <= 3500 canary requests"] = {
        "detected": detected,
        "median_canary_requests": requests,
        "met": detected >= 0.95 and requests <= 3500,
    }
    out["judge CPU <= 1 ms per metric per evaluation"] = {
        "mean_ms": cpu["per_metric_mean_ms"],
        "met": cpu["per_metric_mean_ms"] <= 1.0,
    }
    return out


def run(quick: bool, seed: int) -> dict[str, object]:
    config = JudgeConfig()
    counts = {"healthy": 150 if quick else 1000}
    methods: dict[str, Callable[[Rollout], int | None]] = {
        "judge": lambda r: judge_method(r, config),
        "flagger": flagger_method,
        "argo": argo_method,
    }
    results: dict[str, dict[str, object]] = {name: {} for name in methods}
    started = time.perf_counter()
    sample: list[Rollout] = []
    for index, scenario in enumerate(SCENARIOS):
        rng = random.Random(seed * 1000 + index)
        n = counts.get(scenario.name, 30 if quick else 200)
        rollouts = [simulate(rng, scenario) for _ in range(n)]
        if scenario.healthy:
            sample = rollouts[: 3 if quick else 10]
        for name, method in methods.items():
            results[name][scenario.name] = summarise(scenario, rollouts, [method(r) for r in rollouts])
    cpu = cpu_per_evaluation(sample, config)
    return {
        "targets": targets(results, cpu),
        "seed": seed,
        "quick": quick,
        "model": {
            "window_seconds": WINDOW_SECONDS,
            "steps": [{"weight": w, "seconds": s} for w, s in STEPS],
            "base_rps": BASE_RPS,
            "base_error_rate": BASE_ERROR,
            "base_slow_share": BASE_SLOW,
            "judge_config": {
                "alpha": config.alpha,
                "margin": config.margin,
                "tolerated_ratio": config.tolerated_ratio,
                "min_canary_requests": config.min_canary_requests,
            },
        },
        "methods": results,
        "judge_cpu": cpu,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rollouts (under 30 s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    json.dump(run(args.quick, args.seed), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
