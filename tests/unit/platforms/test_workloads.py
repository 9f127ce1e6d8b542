"""Pure parts of the workload features: ReplicaSet bodies, ephemeral-metadata patches, the fake's stand-ins,
and the engine's dispatch of the two workload actions."""

from __future__ import annotations

from datetime import UTC, datetime
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
    oldest_pods,
    pod_available,
    replica_set,
    restart_pending,
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


NOW = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)


def pod(pod_hash: str, created: str, *, ready_since: str | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {HASH_LABEL: pod_hash}, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T12:00:09Z"
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}] if ready_since else []
    return {"metadata": meta, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("body", "min_ready", "available"),
    [
        pytest.param(pod("a", "2026-01-01T12:00:00Z", ready_since="2026-01-01T12:00:05Z"), 0, True, id="ready"),
        pytest.param(pod("a", "2026-01-01T12:00:00Z"), 0, False, id="not-ready"),
        pytest.param(pod("a", "2026-01-01T12:00:00Z", ready_since="2026-01-01T12:00:05Z"), 10, False, id="min-ready"),
        pytest.param(
            pod("a", "2026-01-01T12:00:00Z", ready_since="2026-01-01T12:00:00Z", deleting=True), 0, False, id="deleting"
        ),
    ],
)
def test_a_pod_is_available_as_kubernetes_counts_it(body: dict[str, Any], min_ready: int, available: bool) -> None:
    assert pod_available(body, NOW, min_ready) is available


def test_oldest_pods_per_revision() -> None:
    pods = [pod("a", "2026-01-01T12:00:05Z"), pod("a", "2026-01-01T12:00:01Z"), pod("b", "2026-01-01T12:00:03Z")]
    assert oldest_pods(pods, {"a"}) == {"a": datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("restart_at", "restarted_at", "pending"),
    [
        pytest.param(None, None, False, id="none"),
        pytest.param("2026-01-01T12:00:20Z", None, True, id="future: the core decides when it is due"),
        pytest.param("2026-01-01T12:00:00Z", None, True, id="due"),
        pytest.param("2026-01-01T12:00:00Z", "2026-01-01T12:00:00Z", False, id="done"),
        pytest.param("2026-01-01T12:00:00Z", "2026-01-01T11:00:00Z", True, id="done-before"),
        pytest.param("not a time", None, False, id="unreadable"),
    ],
)
def test_pod_ages_are_read_only_while_a_restart_is_pending(
    restart_at: str | None, restarted_at: str | None, pending: bool
) -> None:
    rollout = web(restartAt=restart_at)
    if restarted_at is not None:
        rollout = rollout.model_copy(update={"status": {"restartedAt": restarted_at}})
    assert restart_pending(rollout) is pending
