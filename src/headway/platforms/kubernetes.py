"""Revisions as ReplicaSets and Services pinned to them: the Kubernetes `Platform`.

Each revision is one ReplicaSet named ``<rollout>-<hash>``, labelled with ``rollouts-pod-template-hash`` (Argo's
label, so existing Services and dashboards keep matching) and ``headway.dev/rollout``, annotated with its revision
number, and owned by the Rollout (an ownerReference with ``controller: true``, so deleting the Rollout lets the
garbage collector remove its ReplicaSets and pods). Services are switched by adding the hash label to their
selector, never by replacing the user's selector.

The pods themselves are the ReplicaSet controller's and the kubelet's job; readiness is read back from the
ReplicaSet's status. Every method is idempotent: a pass may stop between two of them.
"""

from __future__ import annotations

from typing import Any

from headway.core.actions import ServiceRole
from headway.core.errors import PermanentError
from headway.core.observation import RevisionState
from headway.runtimes.kubernetes.client import (
    DEPLOYMENTS,
    REPLICA_SETS,
    SERVICES,
    ApiConflictError,
    BlockingKube,
    Kind,
    NotFoundError,
)
from headway.spec.rollout import Rollout

HASH_LABEL = "rollouts-pod-template-hash"
ROLLOUT_LABEL = "headway.dev/rollout"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
MANAGED_BY_ANNOTATION = "argo-rollouts.argoproj.io/managed-by-rollouts"
RESTARTED_AT_ANNOTATION = "headway.dev/restartedAt"
PODS = Kind("", "v1", "Pod", "pods")


def replica_set_name(rollout: Rollout, pod_hash: str) -> str:
    return f"{rollout.name}-{pod_hash}"


def owner_reference(rollout: Rollout) -> dict[str, Any]:
    """The reference that makes the Rollout own (and garbage-collect) a ReplicaSet."""
    return {
        "apiVersion": rollout.api_version,
        "kind": "Rollout",
        "name": rollout.name,
        "uid": rollout.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replica_set(
    rollout: Rollout, template: dict[str, Any], pod_hash: str, number: int, replicas: int
) -> dict[str, Any]:
    """The ReplicaSet of one revision; pure, so the body is tested without a server."""
    selector = dict(rollout.spec.selector.match_labels) if rollout.spec.selector else {}
    template_meta = dict(template.get("metadata") or {})
    pod_labels = {**(template_meta.get("labels") or {}), HASH_LABEL: pod_hash}
    labels = {**pod_labels, ROLLOUT_LABEL: rollout.name}
    metadata: dict[str, Any] = {
        "name": replica_set_name(rollout, pod_hash),
        "namespace": rollout.metadata.namespace,
        "labels": labels,
        "annotations": {REVISION_ANNOTATION: str(number)},
    }
    if rollout.metadata.uid:
        metadata["ownerReferences"] = [owner_reference(rollout)]
    return {
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "minReadySeconds": rollout.spec.min_ready_seconds,
            "selector": {"matchLabels": {**selector, HASH_LABEL: pod_hash}},
            "template": {**template, "metadata": {**template_meta, "labels": pod_labels}},
        },
    }


def revision_state(obj: dict[str, Any]) -> RevisionState | None:
    """A ReplicaSet as the core sees it; None for one that is not a Headway revision."""
    meta = obj.get("metadata") or {}
    pod_hash = (meta.get("labels") or {}).get(HASH_LABEL)
    if not pod_hash:
        return None
    try:
        number = int((meta.get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        number = 0
    status = obj.get("status") or {}
    return RevisionState(
        hash=pod_hash,
        number=number,
        replicas=int((obj.get("spec") or {}).get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
    )


class KubernetesPlatform:
    """Implements `headway.platforms.base.Platform` with ReplicaSets, Pods and Services through `BlockingKube`."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def revisions(self, rollout: Rollout) -> dict[str, RevisionState]:
        found: dict[str, RevisionState] = {}
        for obj in self._kube.list(REPLICA_SETS, rollout.metadata.namespace, {ROLLOUT_LABEL: rollout.name}):
            if not self._owned(rollout, obj):
                continue
            state = revision_state(obj)
            if state is not None:
                found[state.hash] = state
        return found

    def create_revision(self, rollout: Rollout, hash: str, number: int, replicas: int) -> None:
        body = replica_set(rollout, self._template(rollout), hash, number, replicas)
        try:
            self._kube.create(REPLICA_SETS, body)
        except ApiConflictError:  # it already exists: creating is scaling
            self.scale_revision(rollout, hash, replicas)

    def scale_revision(self, rollout: Rollout, hash: str, replicas: int) -> None:
        name = replica_set_name(rollout, hash)
        try:
            self._kube.patch(REPLICA_SETS, name, rollout.metadata.namespace, {"spec": {"replicas": replicas}})
        except NotFoundError as error:
            raise PermanentError(f"ReplicaSet {name} of revision {hash} is gone; cannot scale it") from error

    def delete_revision(self, rollout: Rollout, hash: str) -> None:
        self._kube.delete(REPLICA_SETS, replica_set_name(rollout, hash), rollout.metadata.namespace)

    def restart_revision(self, rollout: Rollout, hash: str) -> None:
        """Delete the revision's pods; the ReplicaSet replaces them. PodDisruptionBudgets are the cluster's to
        honour (a real eviction API call is a follow-up)."""
        pods = self._kube.list(PODS, rollout.metadata.namespace, {HASH_LABEL: hash})
        for pod in pods:
            self._kube.delete(PODS, pod["metadata"]["name"], rollout.metadata.namespace)

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        patch = {
            "metadata": {"annotations": {MANAGED_BY_ANNOTATION: rollout.name}},
            "spec": {"selector": {HASH_LABEL: hash}},
        }
        try:
            self._kube.patch(SERVICES, service, rollout.metadata.namespace, patch)
        except NotFoundError as error:
            raise PermanentError(f"the {role} Service {service!r} of {rollout.name} does not exist") from error

    def _template(self, rollout: Rollout) -> dict[str, Any]:
        if rollout.spec.template is not None:
            return dict(rollout.spec.template)
        ref = rollout.spec.workload_ref
        if ref is None:
            raise PermanentError(f"Rollout {rollout.name} has neither spec.template nor spec.workloadRef")
        deployment = self._kube.get(DEPLOYMENTS, ref.name, rollout.metadata.namespace)
        if deployment is None:
            raise PermanentError(f"spec.workloadRef: Deployment {ref.name!r} not found")
        template: dict[str, Any] = deployment.get("spec", {}).get("template") or {}
        return template

    @staticmethod
    def _owned(rollout: Rollout, obj: dict[str, Any]) -> bool:
        owners = obj.get("metadata", {}).get("ownerReferences") or []
        if not owners or not rollout.metadata.uid:
            return True
        return any(owner.get("uid") == rollout.metadata.uid for owner in owners)
