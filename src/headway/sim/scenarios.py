"""The stories `headway simulate` can tell, and the scenario tests are written against.

A scenario says how the stable and the canary revisions behave (how long their pods take to start, or never;
their error rate and latency) and how the analyses of the rollout come out (`RunScript`). It does not say what
the rollout does about it: that is the engine's job, and what the simulation shows.

- ``good``: the canary is as healthy as stable; analyses pass.
- ``bad``: the canary fails 25% of requests; every analysis, step or background, fails after a minute.
- ``slow``: canary pods take 90 s to start and answer 3x slower; still within the analyses' limits, so they pass
  (slowly: two minutes each) and the rollout promotes, later than ``good``.
- ``flaky``: the first step analysis comes back Inconclusive (too little data in its window), which pauses the
  rollout; a user looks a minute later and promotes; later analyses pass.
- ``crashloop``: canary pods never become ready, so the rollout stops making progress and the progress deadline
  fires (Degraded; aborted too when ``progressDeadlineAbort`` is set).
The registry is explicit: an unknown name is an error listing the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from headway.sim.runs import RunScript, Verdict
from headway.sim.traffic import Profile
from headway.spec.status import RunPhase


@dataclass(frozen=True)
class Behaviour:
    """How the pods of one revision behave."""

    startup_seconds: float | None = 10.0
    """From scale-up to ready; None: never ready (crashloop)."""
    error_rate: float = 0.001
    latency_ms: float = 50.0

    def profile(self) -> Profile:
        return Profile(error_rate=self.error_rate, latency_ms=self.latency_ms)


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    stable: Behaviour = Behaviour()
    canary: Behaviour = Behaviour()
    runs: RunScript = field(default_factory=RunScript)
    auto_promote_after: float | None = None
    """Seconds a rollout may wait for ``promote`` before a simulated user gives it; None: nobody does."""
    requests_per_second: float = 100.0


_PASS = Verdict(RunPhase.SUCCESSFUL, 60.0)

SCENARIOS: Mapping[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(name="good", story="the canary is as healthy as stable; analyses pass"),
        Scenario(
            name="bad",
            story="the canary fails 25% of requests; its analyses fail",
            canary=Behaviour(error_rate=0.25),
            runs=RunScript(
                analysis=(Verdict(RunPhase.FAILED, 60.0, "error-rate 0.25 above the limit"),),
                background=(Verdict(RunPhase.FAILED, 60.0, "error-rate 0.25 above the limit"),),
                experiment=(Verdict(RunPhase.FAILED, 60.0, "error-rate 0.25 above the limit"),),
            ),
        ),
        Scenario(
            name="slow",
            story="canary pods start slowly (90 s) and answer 3x slower, within limits; analyses pass slowly",
            canary=Behaviour(startup_seconds=90.0, latency_ms=150.0),
            runs=RunScript(
                analysis=(Verdict(RunPhase.SUCCESSFUL, 120.0),),
                experiment=(Verdict(RunPhase.SUCCESSFUL, 120.0),),
            ),
        ),
        Scenario(
            name="flaky",
            story="the first analysis is inconclusive and pauses the rollout; a user promotes a minute later",
            runs=RunScript(
                analysis=(Verdict(RunPhase.INCONCLUSIVE, 60.0, "too few requests in the window"), _PASS),
                experiment=(Verdict(RunPhase.INCONCLUSIVE, 60.0, "too few requests in the window"), _PASS),
            ),
            auto_promote_after=60.0,
        ),
        Scenario(
            name="crashloop",
            story="canary pods never become ready; the progress deadline fires",
            canary=Behaviour(startup_seconds=None),
        ),
    )
}


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; KeyError naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"unknown scenario {name!r} (known: {known})") from None
