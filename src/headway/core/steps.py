"""Reading the canary step list: which weight and canary scale apply at a step index.

These follow Argo's ``GetCurrentSetWeight``/``GetCanaryReplicasOrWeight``: the last ``setWeight`` at or before
the index counts, past the last step the canary has 100%.
"""

from __future__ import annotations

from collections.abc import Sequence

from headway.spec.rollout import CanaryStep, SetCanaryScale


def weight_at(steps: Sequence[CanaryStep], index: int, full: int = 100) -> int:
    """The canary weight the steps ask for at ``index`` (0 before the first setWeight, ``full`` after the last)."""
    if index >= len(steps):
        return full
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def previous_weight(steps: Sequence[CanaryStep], index: int) -> int:
    """The weight of the last setWeight strictly before ``index``: held while the canary scales up."""
    for step in reversed(steps[: min(index, len(steps))]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def canary_scale_at(steps: Sequence[CanaryStep], index: int) -> SetCanaryScale | None:
    """The setCanaryScale in force at ``index``, or None when the canary follows its traffic weight."""
    if index >= len(steps):
        return None
    for step in reversed(steps[: index + 1]):
        if step.set_canary_scale is not None:
            return None if step.set_canary_scale.match_traffic_weight else step.set_canary_scale
    return None


def describe(step: CanaryStep) -> str:
    """A short human description of a step for events and the timeline (``setWeight: 20``, ``pause: 1h``)."""
    if step.set_weight is not None:
        return f"setWeight: {step.set_weight}"
    if step.pause is not None:
        return f"pause: {step.pause.duration}" if step.pause.duration is not None else "pause (until promoted)"
    if step.analysis is not None:
        return "analysis: " + ", ".join(t.template_name for t in step.analysis.templates)
    if step.set_header_route is not None:
        return f"setHeaderRoute: {step.set_header_route.name}"
    if step.set_mirror_route is not None:
        return f"setMirrorRoute: {step.set_mirror_route.name}"
    if step.set_canary_scale is not None:
        return "setCanaryScale"
    if step.experiment is not None:
        return "experiment"
    return step.kind
