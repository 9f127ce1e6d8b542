"""Validation of the workload fields: ``spec.workloadRef`` and the ephemeral pod metadata of both strategies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.spec.manifests import canary, lint, rollout

P = "rollout.yaml: Rollout/web"


def referencing(**ref: Any) -> dict[str, Any]:
    manifest = rollout()
    del manifest["spec"]["template"], manifest["spec"]["selector"]
    manifest["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", **ref}
    return manifest


@pytest.mark.parametrize("mode", ["never", "onsuccess", "progressively"])
def test_every_argo_scale_down_mode_is_accepted(mode: str) -> None:
    assert lint(referencing(scaleDown=mode)) == []


@pytest.mark.parametrize("mode", ["OnSuccess", "always", 3])
def test_a_bad_scale_down_names_the_field_and_the_choices(mode: object) -> None:
    [problem] = lint(referencing(scaleDown=mode))
    assert problem.startswith(f"{P}: spec.workloadRef.scaleDown: ")
    assert '"never", "onsuccess" or "progressively"' in problem


def test_only_a_deployment_can_be_referenced() -> None:
    assert lint(referencing(kind="StatefulSet")) == [
        f"{P}: spec.workloadRef.kind: 'StatefulSet' is not supported (use Deployment)"
    ]


def test_ephemeral_metadata_is_accepted() -> None:
    meta = {"labels": {"role": "canary"}, "annotations": {"team": "web"}}
    assert lint(canary(steps=[{"setWeight": 50}], canaryMetadata=meta, stableMetadata=meta)) == []


@pytest.mark.parametrize("label", ["app", "rollouts-pod-template-hash"])
def test_ephemeral_labels_may_not_touch_the_selector(label: str) -> None:
    manifest = canary(steps=[{"setWeight": 50}], canaryMetadata={"labels": {label: "x"}})
    assert lint(manifest) == [
        f"{P}: spec.strategy.canary.canaryMetadata.labels.{label}: "
        "must not set a selector label or rollouts-pod-template-hash"
    ]


def test_blue_green_metadata_is_checked_too() -> None:
    manifest = rollout(
        blueGreen={"activeService": "a", "previewService": "p", "previewMetadata": {"labels": {"app": "x"}}}
    )
    assert [p.split(": ")[2] for p in lint(manifest)] == ["spec.strategy.blueGreen.previewMetadata.labels.app"]
