"""Building blocks for scenario tests: rollouts from a few keywords, and the simulator's entry point.

Scenario tests read like stories: build a rollout (or name an example file), run it under a scenario, assert on
the outcome, the event reasons and the timeline::

    result = run_scenario(canary(steps=[{"setWeight": 20}, {"pause": {}}]), "good")
    assert result.outcome is Outcome.PAUSED

Everything runs in virtual time through the real engine and core, with the fake adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headway.sim.runner import Outcome, SimResult, TimelineEntry, run_scenario
from headway.spec.rollout import Rollout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

__all__ = [
    "EXAMPLES",
    "Outcome",
    "SimResult",
    "TimelineEntry",
    "blue_green",
    "canary",
    "make_rollout",
    "run_scenario",
]


def make_rollout(
    strategy: dict[str, Any],
    *,
    name: str = "web",
    replicas: int = 4,
    image: str = "example/web:1.0.0",
    **spec: Any,
) -> Rollout:
    """A valid Rollout with one container; ``spec`` adds wire-named fields (``progressDeadlineSeconds=60``)."""
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
            "strategy": strategy,
            **spec,
        },
    }
    return Rollout.model_validate(body)


def canary(
    steps: list[dict[str, Any]] | None = None,
    *,
    routed: bool = False,
    analysis: dict[str, Any] | None = None,
    **spec: Any,
) -> Rollout:
    """A canary rollout; ``routed`` adds Istio traffic routing and canary/stable Services."""
    strategy: dict[str, Any] = {"steps": steps if steps is not None else [{"setWeight": 25}, {"pause": {}}]}
    if routed:
        strategy |= {
            "canaryService": "web-canary",
            "stableService": "web-stable",
            "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        }
    if analysis is not None:
        strategy["analysis"] = analysis
    return make_rollout({"canary": strategy}, **spec)


def blue_green(*, auto_promote: bool = True, **spec: Any) -> Rollout:
    """A blue/green rollout with active and preview Services."""
    strategy = {"activeService": "web-active", "previewService": "web-preview", "autoPromotionEnabled": auto_promote}
    return make_rollout({"blueGreen": strategy}, **spec)
