"""Ephemeral pod metadata: which revision the core asks to carry canary/stable (preview/active) metadata, when."""

from __future__ import annotations

from typing import Any

from headway.core import actions as a
from headway.core import commands
from headway.spec.rollout import PodMetadata
from headway.spec.status import Phase
from tests.unit.core.driver import World, healthy, rollout, settled, started

CANARY = {"labels": {"role": "canary"}, "annotations": {"note": "new"}}
STABLE = {"labels": {"role": "stable"}}


def last_metadata(w: World) -> dict[str, PodMetadata | None]:
    """The metadata each revision was last asked to carry, in the latest pass."""
    latest = w.decisions[-1].actions
    return {x.hash: x.metadata for x in latest if isinstance(x, a.SetPodMetadata)}


def labels(metadata: PodMetadata | None) -> dict[str, str] | None:
    return None if metadata is None else dict(metadata.labels)


def canary_with_metadata(**extra: Any) -> dict[str, Any]:
    steps = [{"setWeight": 50}, {"pause": {}}]
    return {"canary": {"steps": steps, "canaryMetadata": CANARY, "stableMetadata": STABLE, **extra}}


def test_without_ephemeral_metadata_nothing_is_asked() -> None:
    w = started(rollout({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}]}}))
    w.deploy("app:2").run(until=settled)
    assert not [x for x in w.log if isinstance(x, a.SetPodMetadata)]


def test_the_steady_revision_carries_stable_metadata() -> None:
    w = started(rollout(canary_with_metadata()))
    assert {h: labels(m) for h, m in last_metadata(w).items()} == {w.new_hash: {"role": "stable"}}


def test_during_an_update_the_canary_and_the_stable_carry_their_roles_then_promotion_swaps() -> None:
    w = started(rollout(canary_with_metadata()))
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    during = last_metadata(w)
    canary = during[w.new_hash]
    assert canary is not None
    assert (dict(canary.labels), dict(canary.annotations)) == ({"role": "canary"}, {"note": "new"})
    assert labels(during[old]) == {"role": "stable"}

    promoted_at = len(w.log)
    w.status = commands.promote(w.rollout, w.status)[1]
    w.run(until=healthy)
    assert labels(last_metadata(w)[w.new_hash]) == {"role": "stable"}
    later = [x for x in w.log[promoted_at:] if isinstance(x, a.SetPodMetadata) and x.hash == old]
    assert all(x.metadata in (None, PodMetadata.model_validate(STABLE)) for x in later)
    assert last_metadata(w).get(old) is None  # no longer stable: never asked to carry stable metadata again


def test_blue_green_preview_and_active_metadata() -> None:
    strategy = {
        "blueGreen": {
            "activeService": "web-active",
            "previewService": "web-preview",
            "autoPromotionEnabled": False,
            "previewMetadata": {"labels": {"role": "preview"}},
            "activeMetadata": {"labels": {"role": "active"}},
        }
    }
    w = started(rollout(strategy))
    old = w.new_hash
    w.deploy("app:2").run(until=lambda w: w.status.phase == Phase.PAUSED)
    during = last_metadata(w)
    assert (labels(during[w.new_hash]), labels(during[old])) == ({"role": "preview"}, {"role": "active"})
    w.status = commands.promote(w.rollout, w.status)[1]
    w.run(until=healthy)
    assert labels(last_metadata(w)[w.new_hash]) == {"role": "active"}
