"""Pure parts of the workload features: ReplicaSet bodies, ephemeral-metadata patches, the fake's stand-ins,
and the engine's dispatch of the two workload actions."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core import actions as a
from headway.engine.apply import apply_actions
from headway.platforms.fake import FakePlatform
from headway.platforms.kubernetes import (
    EPHEMERAL_ANNOTATION,
    HASH_LABEL,
    REVISION_ANNOTATION,
    ephemeral_of,
    metadata_patch,
    replica_set,
    revision_state,
)
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import PodMetadata, Rollout


def web(**spec: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w"}]}},
                "strategy": {"canary": {"steps": []}},
                **spec,
            },
        }
    )


def test_a_replica_set_carries_its_revision_number_hash_and_owner() -> None:
    rollout = web()
    assert rollout.spec.template is not None
    body = replica_set(rollout, dict(rollout.spec.template), "abc", 7, 3)
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "7"
    assert body["metadata"]["labels"][HASH_LABEL] == "abc"
    assert body["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: "abc"}
    assert body["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: "abc"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    state = revision_state({**body, "status": {"readyReplicas": 2, "availableReplicas": 1}})
    assert state is not None and (state.number, state.replicas, state.ready, state.available) == (7, 3, 2, 1)


@pytest.mark.parametrize(
    ("current", "previous", "wanted", "base", "patch"),
    [
        pytest.param({"app": "web"}, {}, {"role": "canary"}, {}, {"role": "canary"}, id="add"),
        pytest.param({"role": "canary"}, {"role": "canary"}, {"role": "canary"}, {}, {}, id="nothing-to-do"),
        pytest.param({"role": "canary"}, {"role": "canary"}, {"role": "stable"}, {}, {"role": "stable"}, id="swap"),
        pytest.param({"role": "canary", "x": "1"}, {"role": "canary"}, {}, {}, {"role": None}, id="remove"),
        pytest.param({"tier": "eph"}, {"tier": "eph"}, {}, {"tier": "web"}, {"tier": "web"}, id="restore-template"),
        pytest.param({"user": "kept"}, {}, {}, {}, {}, id="leaves-others-alone"),
    ],
)
def test_metadata_patches_change_only_ephemeral_keys(
    current: dict[str, str],
    previous: dict[str, str],
    wanted: dict[str, str],
    base: dict[str, str],
    patch: dict[str, str | None],
) -> None:
    assert metadata_patch(current, previous, wanted, base) == patch


@pytest.mark.parametrize("raw", ["", "not json", "[1]", '{"labels": 3}'])
def test_an_unreadable_ephemeral_record_counts_as_none(raw: str) -> None:
    assert ephemeral_of({"metadata": {"annotations": {EPHEMERAL_ANNOTATION: raw}}}) == ({}, {})


def test_the_ephemeral_record_round_trips() -> None:
    raw = '{"annotations": {"n": "1"}, "labels": {"role": "canary"}}'
    assert ephemeral_of({"metadata": {"annotations": {EPHEMERAL_ANNOTATION: raw}}}) == ({"role": "canary"}, {"n": "1"})


def test_the_workload_actions_reach_the_platform_and_the_fake_only_scales_down() -> None:
    rollout, platform = web(), FakePlatform()
    platform.set_workload_ref_replicas(rollout, 4)
    metadata = PodMetadata.model_validate({"labels": {"role": "canary"}})
    applied = apply_actions(
        rollout,
        [
            a.CreateRevision(hash="abc", number=1, replicas=1),
            a.SetPodMetadata(hash="abc", metadata=metadata),
            a.ScaleWorkloadRef(replicas=2),
            a.ScaleWorkloadRef(replicas=3),
        ],
        platform=platform,
        router=None,
        runs=ScriptedRuns(),
    )
    assert applied.ok
    assert platform.methods_called() == [
        "create_revision",
        "set_pod_metadata",
        "scale_workload_ref",
        "scale_workload_ref",
    ]
    assert platform.workload_ref_replicas(rollout) == 2
    revision = platform.revision(rollout, "abc")
    assert revision is not None and revision.metadata == metadata
