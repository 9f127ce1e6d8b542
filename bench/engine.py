"""Engine speed: pure decide passes per second, and whole simulated rollouts per example (virtual time).

Run on demand: ``.venv/bin/python bench/engine.py``. Prints one JSON document.
"""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

from headway.core.decide import decide
from headway.engine.reconcile import observe
from headway.platforms.fake import EPOCH
from headway.sim.runner import run_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCENARIOS = ("good", "bad", "slow", "flaky", "crashloop")


def decide_rate(seconds: float = 1.0) -> dict[str, float]:
    """Passes per second of `decide` on a rollout caught mid-way (canary with analysis and a router)."""
    result = run_scenario(EXAMPLES / "canary-traffic-analysis.yaml", "good", time_limit=120)
    rollout, status = result.rollout, result.status
    now = EPOCH + timedelta(seconds=result.summary.duration_seconds)
    observation, _ = observe(rollout, now=now, platform=result.platform, router=result.router, runs=result.runs)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        decide(rollout, status, observation)
        count += 1
    elapsed = time.perf_counter() - start
    return {"decide_passes_per_second": round(count / elapsed), "decide_microseconds": round(1e6 * elapsed / count, 1)}


def simulations() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for example in sorted(EXAMPLES.glob("*.yaml")):
        for scenario in SCENARIOS:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                result = run_scenario(example, scenario)
                times.append(time.perf_counter() - start)
            summary = result.summary
            rows.append(
                {
                    "example": example.name,
                    "scenario": scenario,
                    "outcome": result.outcome.value,
                    "virtual_seconds": summary.duration_seconds,
                    "passes": summary.passes,
                    "wall_ms_median": round(1000 * statistics.median(times), 1),
                    "canary_requests": summary.canary_requests,
                    "failed_requests": summary.failed_requests,
                }
            )
    return rows


def main() -> None:
    tracemalloc.start()
    rows = simulations()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report = {
        **decide_rate(),
        "simulations": rows,
        "slowest_simulation_ms": max(float(str(r["wall_ms_median"])) for r in rows),
        "peak_traced_memory_mib": round(peak / 2**20, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
