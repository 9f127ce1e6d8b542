"""Revisions as ReplicaSets and Services pinned to them: the Kubernetes `Platform`.

Each revision is one ReplicaSet named ``<rollout>-<hash>``, labelled with ``rollouts-pod-template-hash`` (Argo's
label, so existing Services and dashboards keep matching) and ``headway.dev/rollout``, annotated with its revision
number, and owned by the Rollout (an ownerReference with ``controller: true``, so deleting the Rollout lets the
garbage collector remove its ReplicaSets and pods). Services are switched by adding the hash label to their
selector, never by replacing the user's selector.

The pods themselves are the ReplicaSet controller's and the kubelet's job; readiness is read back from the
ReplicaSet's status. Pods are touched directly for three things only, as in Argo: ephemeral role metadata
(patched in place, recorded on the ReplicaSet in ``rollout.argoproj.io/ephemeral-metadata``), ``restartAt``
(one pod deleted at a time, only when all are available) and reading pod ages while a restart is pending. A
``workloadRef`` Deployment is read for its template and only ever scaled down. Every method is idempotent: a
pass may stop between two of them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from headway.core.actions import ServiceRole
from headway.core.errors import PermanentError
from headway.core.observation import RevisionState
from headway.kube.client import (
    DEPLOYMENTS,
    REPLICA_SETS,
    SERVICES,
    ApiConflictError,
    BlockingKube,
    Kind,
    NotFoundError,
)
from headway.spec.rollout import POD_TEMPLATE_HASH_LABEL, LabelSelector, PodMetadata, Rollout

HASH_LABEL = POD_TEMPLATE_HASH_LABEL
ROLLOUT_LABEL = "headway.dev/rollout"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
MANAGED_BY_ANNOTATION = "argo-rollouts.argoproj.io/managed-by-rollouts"
RESTARTED_AT_ANNOTATION = "headway.dev/restartedAt"
EPHEMERAL_ANNOTATION = "rollout.argoproj.io/ephemeral-metadata"
"""On a ReplicaSet: the ephemeral metadata (JSON) its pods were last given in full, so the next role change knows
which keys to take away again (Argo's annotation, so a cluster moving between the two keeps working)."""
TEMPLATE_ANNOTATION = "headway.dev/pod-template"
"""On a ReplicaSet: the Rollout's pod template exactly as it was hashed (compact JSON, keys sorted). The API server
defaults the copy in ``spec.template`` (``imagePullPolicy``, ``dnsPolicy``, ``securityContext: {}``, ...), so only
this copy hashes back to the revision: ``undo`` writes it into the Rollout and finds the same ReplicaSet again."""
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
        "annotations": {
            REVISION_ANNOTATION: str(number),
            TEMPLATE_ANNOTATION: json.dumps(template, sort_keys=True, separators=(",", ":"), default=str),
        },
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


Metadata = tuple[dict[str, str], dict[str, str]]
"""(labels, annotations)."""


def written_template(replica_set: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template as the Rollout had it when the revision was made (`TEMPLATE_ANNOTATION`); None when the
    ReplicaSet has none (made by an older release, or by Argo) or it does not parse."""
    raw = ((replica_set.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_ANNOTATION)
    try:
        template = json.loads(raw) if raw else None
    except ValueError:
        return None
    return template if isinstance(template, dict) else None


def ephemeral_of(replica_set: dict[str, Any]) -> Metadata:
    """What `EPHEMERAL_ANNOTATION` says the ReplicaSet's pods were last given; nothing for a missing or bad value."""
    raw = ((replica_set.get("metadata") or {}).get("annotations") or {}).get(EPHEMERAL_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        return {}, {}
    labels, annotations = data.get("labels"), data.get("annotations")
    return (
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
    )


def wanted_metadata(metadata: PodMetadata | None) -> Metadata:
    if metadata is None:
        return {}, {}
    return dict(metadata.labels), dict(metadata.annotations)


def metadata_patch(
    current: dict[str, str], previous: dict[str, str], wanted: dict[str, str], base: dict[str, str]
) -> dict[str, str | None]:
    """The merge patch that turns ``current`` into ``wanted`` ephemeral keys: keys ``previous`` added and
    ``wanted`` drops fall back to the template's own value (``base``) or go; empty when nothing changes."""
    patch: dict[str, str | None] = {}
    for key in previous.keys() - wanted.keys():
        fallback = base.get(key)
        if current.get(key) != fallback:
            patch[key] = fallback
    for key, value in wanted.items():
        if current.get(key) != value:
            patch[key] = value
    return patch


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


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as the API server writes it (``2026-01-01T00:00:00Z``); None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def created_at(pod: dict[str, Any]) -> datetime | None:
    return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def terminating(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_available(pod: dict[str, Any], now: datetime, min_ready_seconds: int) -> bool:
    """Ready (condition ``Ready=True``) for at least ``minReadySeconds``, and not terminating: Kubernetes' own
    definition of an available pod."""
    if terminating(pod):
        return False
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") != "True":
                return False
            since = parse_time(condition.get("lastTransitionTime"))
            return min_ready_seconds == 0 or (since is not None and since + timedelta(seconds=min_ready_seconds) <= now)
    return False


def oldest_pods(pods: list[dict[str, Any]], hashes: set[str]) -> dict[str, datetime]:
    """Per revision hash, when its oldest running pod was created."""
    oldest: dict[str, datetime] = {}
    for pod in pods:
        pod_hash = ((pod.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL)
        created = created_at(pod)
        if pod_hash in hashes and created is not None and (pod_hash not in oldest or created < oldest[pod_hash]):
            oldest[pod_hash] = created
    return oldest


def restart_pending(rollout: Rollout) -> bool:
    """``restartAt`` is set and the Rollout's status does not say it was done: only then are pod ages worth a
    LIST. Whether it is due is the core's call, on the pass's clock (not this process's: time is an input)."""
    restart_at = parse_time(rollout.spec.restart_at)
    if restart_at is None:
        return False
    done = parse_time((rollout.status or {}).get("restartedAt"))
    return done is None or done < restart_at


class KubernetesPlatform:
    """Implements `headway.platforms.base.Platform` with ReplicaSets, Pods and Services through `BlockingKube`."""

    def __init__(self, kube: BlockingKube) -> None:
        self._kube = kube

    def revisions(self, rollout: Rollout) -> dict[str, RevisionState]:
        """The ReplicaSets; while a ``restartAt`` is pending, also each one's oldest pod (one more LIST)."""
        found: dict[str, RevisionState] = {}
        for obj in self._kube.list(REPLICA_SETS, rollout.metadata.namespace, {ROLLOUT_LABEL: rollout.name}):
            if not self._owned(rollout, obj):
                continue
            state = revision_state(obj)
            if state is not None:
                found[state.hash] = state
        if found and restart_pending(rollout):
            oldest = oldest_pods(self._live_pods(rollout, None), set(found))
            found = {h: replace(state, oldest_pod_at=oldest.get(h)) for h, state in found.items()}
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

    def restart_revision(self, rollout: Rollout, hash: str, before: datetime | None = None) -> None:
        """Delete the oldest pod created before ``before`` (default: now), the ReplicaSet replaces it; nothing
        while a pod is terminating, missing or not yet available (the last replacement is still coming up).
        Pods are deleted, not evicted, as Argo does; PodDisruptionBudgets apply only to the eviction API."""
        namespace = rollout.metadata.namespace
        obj = self._kube.get(REPLICA_SETS, replica_set_name(rollout, hash), namespace)
        if obj is None:
            return
        pods = self._selected_pods(rollout, hash)
        now = datetime.now(UTC)
        wanted = int((obj.get("spec") or {}).get("replicas") or 0)
        min_ready = int((obj.get("spec") or {}).get("minReadySeconds") or 0)
        if len(pods) < wanted or not all(pod_available(pod, now, min_ready) for pod in pods):
            return  # also covers a terminating pod: it is never available
        cutoff = before or now
        stale = sorted((p for p in pods if (created_at(p) or cutoff) < cutoff), key=lambda p: created_at(p) or now)
        if stale:
            self._kube.delete(PODS, stale[0]["metadata"]["name"], namespace)

    def set_pod_metadata(self, rollout: Rollout, hash: str, metadata: PodMetadata | None) -> None:
        """Template first, then each pod in place, then the record of what was given (a pass that stops before
        the record is redone by the next). Pods are checked on every call while there is metadata to carry or
        take away, as Argo does: the ReplicaSet controller may have created a pod from the template it had just
        before the patch, after this call listed the pods."""
        namespace, name = rollout.metadata.namespace, replica_set_name(rollout, hash)
        obj = self._kube.get(REPLICA_SETS, name, namespace)
        if obj is None:
            return
        previous, wanted = ephemeral_of(obj), wanted_metadata(metadata)
        protected = {HASH_LABEL, *(rollout.spec.selector.match_labels if rollout.spec.selector else {})}
        wanted = ({k: v for k, v in wanted[0].items() if k not in protected}, wanted[1])  # validation says so too
        template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        base = self._base_metadata(rollout)
        template_patch = self._meta_patch(template_meta, previous, wanted, base)
        if template_patch:
            self._patch(REPLICA_SETS, name, namespace, {"spec": {"template": {"metadata": template_patch}}})
        nothing: Metadata = ({}, {})
        if int((obj.get("spec") or {}).get("replicas") or 0) > 0 and (wanted != nothing or previous != nothing):
            for pod in self._pods(rollout, hash):
                pod_patch = self._meta_patch(pod.get("metadata") or {}, previous, wanted, base)
                if pod_patch:
                    self._patch(PODS, pod["metadata"]["name"], namespace, {"metadata": pod_patch})
        if previous != wanted:
            record = None if wanted == nothing else json.dumps({"labels": wanted[0], "annotations": wanted[1]})
            self._patch(REPLICA_SETS, name, namespace, {"metadata": {"annotations": {EPHEMERAL_ANNOTATION: record}}})

    def scale_workload_ref(self, rollout: Rollout, replicas: int) -> None:
        """Scale the referenced Deployment down (never up); a Deployment already gone has nothing to scale."""
        ref = rollout.spec.workload_ref
        if ref is None:
            return
        if ref.kind != "Deployment":
            raise PermanentError(f"spec.workloadRef.kind: only Deployment can be scaled down, not {ref.kind!r}")
        deployment = self._kube.get(DEPLOYMENTS, ref.name, rollout.metadata.namespace)
        if deployment is None:
            return
        raw = (deployment.get("spec") or {}).get("replicas")
        current = 1 if raw is None else int(raw)  # the API server's default for an unset Deployment replicas
        target = max(0, replicas)
        if current > target:
            self._patch(DEPLOYMENTS, ref.name, rollout.metadata.namespace, {"spec": {"replicas": target}})

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        patch = {
            "metadata": {"annotations": {MANAGED_BY_ANNOTATION: rollout.name}},
            "spec": {"selector": {HASH_LABEL: hash}},
        }
        try:
            self._kube.patch(SERVICES, service, rollout.metadata.namespace, patch)
        except NotFoundError as error:
            raise PermanentError(f"the {role} Service {service!r} of {rollout.name} does not exist") from error

    def _selected_pods(self, rollout: Rollout, pod_hash: str | None) -> list[dict[str, Any]]:
        """The pods of one revision (``None``: of every revision), terminating ones included, selected as the
        ReplicaSets select them (and checked again: not every server filters)."""
        wanted = dict(rollout.spec.selector.match_labels) if rollout.spec.selector else {}
        if pod_hash is not None:
            wanted[HASH_LABEL] = pod_hash
        pods = self._kube.list(PODS, rollout.metadata.namespace, wanted)
        return [
            pod
            for pod in pods
            if HASH_LABEL in (labels := (pod.get("metadata") or {}).get("labels") or {})
            and all(labels.get(k) == v for k, v in wanted.items())
            and self._owned_by_ours(rollout, pod, labels[HASH_LABEL])
        ]

    @staticmethod
    def _owned_by_ours(rollout: Rollout, pod: dict[str, Any], pod_hash: str) -> bool:
        """The pod belongs to this Rollout's ReplicaSet of that hash: labels alone may also match another
        Rollout's pods (same template and selector in one namespace), which a restart must never delete."""
        owners = (pod.get("metadata") or {}).get("ownerReferences") or []
        return any(
            o.get("kind") == "ReplicaSet" and o.get("name") == replica_set_name(rollout, pod_hash) for o in owners
        )

    def _live_pods(self, rollout: Rollout, pod_hash: str | None) -> list[dict[str, Any]]:
        return [pod for pod in self._selected_pods(rollout, pod_hash) if not terminating(pod)]

    def _pods(self, rollout: Rollout, pod_hash: str) -> list[dict[str, Any]]:
        return self._live_pods(rollout, pod_hash)

    def _patch(self, kind: Kind, name: str, namespace: str | None, patch: dict[str, Any]) -> None:
        """A patch whose object may have gone meanwhile (a pod replaced, a revision deleted): nothing left to do."""
        try:
            self._kube.patch(kind, name, namespace, patch)
        except NotFoundError:
            return

    @staticmethod
    def _meta_patch(current: dict[str, Any], previous: Metadata, wanted: Metadata, base: Metadata) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        for field, index in (("labels", 0), ("annotations", 1)):
            change = metadata_patch(current.get(field) or {}, previous[index], wanted[index], base[index])
            if change:
                patch[field] = change
        return patch

    @staticmethod
    def _base_metadata(rollout: Rollout) -> Metadata:
        """The pod template's own labels and annotations (what a removed ephemeral key falls back to)."""
        meta = (rollout.spec.template or {}).get("metadata") or {}
        return dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})

    def resolve_workload_ref(self, rollout: Rollout) -> Rollout:
        """The Rollout with the referenced Deployment's pod template (and its selector, when the Rollout names
        none) filled in, to be decided on: the core hashes ``spec.template``, so without this a change to the
        Deployment's template would never become a new revision. Unchanged without ``workloadRef``."""
        ref = rollout.spec.workload_ref
        if ref is None:
            return rollout
        if ref.kind != "Deployment":
            raise PermanentError(f"spec.workloadRef.kind: only Deployment is supported, not {ref.kind!r}")
        deployment = self._kube.get(DEPLOYMENTS, ref.name, rollout.metadata.namespace)
        if deployment is None:
            raise PermanentError(f"spec.workloadRef: Deployment {ref.name!r} not found")
        spec = deployment.get("spec") or {}
        update: dict[str, Any] = {"template": spec.get("template") or {}}
        if rollout.spec.selector is None and spec.get("selector"):
            update["selector"] = LabelSelector.model_validate(spec["selector"])
        return rollout.model_copy(update={"spec": rollout.spec.model_copy(update=update)})

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
