"""Experiments in the cluster, run by the controller: read, decide (`headway.core.experiments`), act, write status.

The controller is the experiment controller too. Each Rollout's worker calls `ExperimentRunner.advance_all` once
per pass; it advances every unfinished Experiment labelled with that Rollout and returns when it wants to look
again. Nothing is kept between calls: the Experiment's ``status`` and the objects it owns are the whole state, so
a restarted (or newly elected) controller carries on where the last one stopped.

What it creates, as Argo's experiment controller does:
- one ReplicaSet per template, named ``<experiment>-<template>``, owned by the Experiment, its pods labelled with
  ``rollouts-pod-template-hash`` of the template and experiment (not the Rollout's revisions', so the Rollout's
  Services never select them: `template_hash` says how this differs from Argo) and annotated
  ``experiment.argoproj.io/name`` / ``template-name``; ``scale-down-deadline`` on it records when a finished
  experiment may scale it to 0;
- one AnalysisRun per analysis, ``<experiment>-<analysis>``, owned by the Experiment and labelled with the Rollout
  (so the controller's `RunMeasurer` measures it and its changes wake the Rollout's worker), its spec resolved from
  the templates exactly as a Rollout's own runs are (`headway.runtimes.kubernetes.analysis.resolve_run_spec`).

The status is written to /status (or with the Experiment under Argo's CRD, which has no /status: `status_writes`)
with the resourceVersion read, so a concurrent change (a user setting
``spec.terminate``) makes the write fail with a conflict and the next look decides again from the newer object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from headway.core.actions import RunKind, StartAnalysisRun
from headway.core.analysis import iso, parse_time
from headway.core.errors import AdapterError, TemporaryError
from headway.core.experiments import (
    CreateTemplateReplicaSet,
    ExperimentAction,
    ExperimentObservation,
    MarkScaleDown,
    ScaleTemplateReplicaSet,
    StartExperimentAnalysis,
    TemplateReplicaSet,
    TerminateExperimentAnalysis,
    decide_experiment,
    is_done,
    replica_set_name,
)
from headway.core.hashing import pod_template_hash
from headway.core.observation import RunState
from headway.engine.analysis import describe_exception
from headway.kube.client import (
    REPLICA_SETS,
    RUN_KIND_LABEL,
    ApiConflictError,
    BlockingKube,
    NotFoundError,
    analysis_runs,
    experiments,
    rollouts,
)
from headway.platforms.kubernetes import HASH_LABEL, ROLLOUT_LABEL
from headway.runtimes.kubernetes.analysis import resolve_run_spec
from headway.runtimes.kubernetes.runs import STABLE_REVISION_ANNOTATION, create_analysis_run, has_experiments, phase_of
from headway.runtimes.kubernetes.status_writes import patch_status_blocking
from headway.spec.experiment import Experiment, ExperimentSpec, ExperimentTemplate
from headway.spec.rollout import Rollout, RolloutAnalysis

log = logging.getLogger(__name__)

EXPERIMENT_NAME_ANNOTATION = "experiment.argoproj.io/name"
TEMPLATE_NAME_ANNOTATION = "experiment.argoproj.io/template-name"
SCALE_DOWN_DEADLINE_ANNOTATION = "scale-down-deadline"
EXPERIMENT_RUN_KIND = "experiment-analysis"
RETRY_AFTER_ERROR = 30.0
"""Seconds before an experiment whose advance failed permanently (forbidden, invalid) is tried again."""


def owner_of(experiment: Mapping[str, Any], api_version: str) -> dict[str, Any]:
    meta = experiment.get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": "Experiment",
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def template_hash(experiment: str, template: ExperimentTemplate) -> str:
    """The pod-template hash of an experiment template's pods: of the pod template (without any hash label it was
    copied with) and of the experiment and template names.

    Argo hashes the pod template alone, so a template copied from the stable or canary ReplicaSet gets that
    revision's hash: the Rollout's Services then send traffic to the experiment's pods and two ReplicaSets share
    one selector. Mixing in the names keeps every experiment's pods apart, where Argo's would collide."""
    pod = dict(template.template)
    meta = dict(pod.get("metadata") or {})
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != HASH_LABEL}
    return pod_template_hash({"experiment": experiment, "template": template.name, "pod": {**pod, "metadata": meta}})


def template_replica_set(
    experiment: Mapping[str, Any], api_version: str, template: ExperimentTemplate, replicas: int
) -> dict[str, Any]:
    """The ReplicaSet of one experiment template (pure: tested without a server)."""
    meta = experiment.get("metadata") or {}
    pod_hash = template_hash(meta.get("name", ""), template)
    pod = dict(template.template)
    pod_meta = dict(pod.get("metadata") or {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), HASH_LABEL: pod_hash}
    selector = template.selector.wire()
    selector["matchLabels"] = {**selector.get("matchLabels", {}), HASH_LABEL: pod_hash}
    metadata: dict[str, Any] = {
        "name": replica_set_name(meta.get("name", ""), template.name),
        "namespace": meta.get("namespace"),
        "labels": {HASH_LABEL: pod_hash},
        "annotations": {EXPERIMENT_NAME_ANNOTATION: meta.get("name", ""), TEMPLATE_NAME_ANNOTATION: template.name},
    }
    if meta.get("uid"):
        metadata["ownerReferences"] = [owner_of(experiment, api_version)]
    return {
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "minReadySeconds": template.min_ready_seconds,
            "selector": selector,
            "template": {**pod, "metadata": pod_meta},
        },
    }


def observed_replica_set(template: str, obj: Mapping[str, Any]) -> TemplateReplicaSet:
    """A template's ReplicaSet as the core sees it."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    raw_deadline = (meta.get("annotations") or {}).get(SCALE_DOWN_DEADLINE_ANNOTATION)
    try:
        deadline = parse_time(raw_deadline) if raw_deadline else None
    except ValueError:
        deadline = None  # unreadable: the core sets a new one
    return TemplateReplicaSet(
        name=template,
        pod_template_hash=str((meta.get("labels") or {}).get(HASH_LABEL) or ""),
        replicas=int((obj.get("spec") or {}).get("replicas") or 0),
        current=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        scale_down_deadline=deadline,
    )


class ExperimentRunner:
    """Advances Experiments one look at a time through `BlockingKube`; keeps nothing between calls."""

    def __init__(self, kube: BlockingKube, group: str) -> None:
        self._kube = kube
        self._group = group
        self._experiments = experiments(group)
        self._runs = analysis_runs(group)

    def advance_all(self, rollout: Rollout, now: datetime) -> float | None:
        """Advance every unfinished Experiment of ``rollout``; seconds until the earliest wants another look
        (None: none does). Reads nothing for a Rollout without experiment steps."""
        if not has_experiments(rollout):
            return None
        namespace = rollout.metadata.namespace
        found = self._kube.list(self._experiments, namespace, {ROLLOUT_LABEL: rollout.name})
        delays: list[float] = []
        for obj in found:
            try:
                delay = self._advance(obj, rollout, now)
            except AdapterError as error:  # one experiment's trouble must not stop the others or the Rollout's pass
                log.warning("advancing experiment %s: %s", (obj.get("metadata") or {}).get("name"), error)
                delay = error.delay if isinstance(error, TemporaryError) else RETRY_AFTER_ERROR
            except Exception as error:  # a hand-edited field the models did not catch, a bug: same isolation
                log.exception("advancing experiment %s failed; it is Error", (obj.get("metadata") or {}).get("name"))
                delay = self._fail(obj, f"the experiment could not be advanced: {describe_exception(error)}")
            if delay is not None:
                delays.append(delay)
        return min(delays, default=None)

    def advance(self, namespace: str, name: str, now: datetime, *, rollout: Rollout | None = None) -> float | None:
        """Advance one Experiment; seconds until it wants another look, None when it is finished (or gone).
        Without ``rollout`` its owning Rollout is read (a hand-written Experiment is its own context)."""
        obj = self._kube.get(self._experiments, name, namespace)
        if obj is None:
            return None
        return self._advance(obj, rollout, now)

    # --- one experiment ----------------------------------------------------------------------------------------

    def _advance(self, obj: dict[str, Any], rollout: Rollout | None, now: datetime) -> float | None:
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
        try:
            experiment = Experiment.model_validate({"apiVersion": self._experiments.api_version, **obj})
        except ValidationError as error:
            first = error.errors()[0]
            where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
            if ((obj.get("status") or {}).get("phase") or "") != "Error":
                self._write(obj, {"phase": "Error", "message": f"{where}: {first['msg']}"})
            return None
        status = experiment.status
        if status is not None and is_done(status):
            return None
        observation = ExperimentObservation(
            now=now,
            replica_sets=self._replica_sets(experiment),
            analysis_runs=self._analysis_runs(experiment),
        )
        decision = decide_experiment(name, experiment.spec, status, observation)
        context = rollout or self._rollout_of(obj)
        for action in decision.actions:
            self._apply(obj, experiment.spec, context, action)
        if decision.status != status:
            wire = decision.status.wire()
            wire.setdefault("message", None)  # a merge patch keeps an old message unless told to drop it
            if not self._write(obj, wire):
                return 0.0
        if decision.done:
            log.info("experiment %s/%s finished %s", namespace, name, decision.status.phase.value)
            return None
        return decision.requeue_after

    def _replica_sets(self, experiment: Experiment) -> dict[str, TemplateReplicaSet]:
        found: dict[str, TemplateReplicaSet] = {}
        uid = experiment.metadata.uid
        for template in experiment.spec.templates:
            rs_name = replica_set_name(experiment.metadata.name, template.name)
            obj = self._kube.get(REPLICA_SETS, rs_name, experiment.metadata.namespace)
            if obj is None:
                continue
            owners = (obj.get("metadata") or {}).get("ownerReferences") or []
            if uid and owners and not any(owner.get("uid") == uid for owner in owners):
                log.warning(
                    "ReplicaSet %s is not owned by experiment %s; leaving it alone", rs_name, experiment.metadata.name
                )
                continue
            found[template.name] = observed_replica_set(template.name, obj)
        return found

    def _analysis_runs(self, experiment: Experiment) -> dict[str, RunState]:
        found: dict[str, RunState] = {}
        for entry in experiment.status.analysis_runs if experiment.status else []:
            if entry.phase.completed:
                continue
            obj = self._kube.get(self._runs, entry.analysis_run, experiment.metadata.namespace)
            if obj is not None:
                found[entry.analysis_run] = phase_of(obj)
        return found

    def _rollout_of(self, obj: Mapping[str, Any]) -> Rollout:
        """The Rollout an Experiment belongs to; for a hand-written one, a stand-in named after it (templates are
        resolved in its namespace, and there is no Rollout field for arguments to read)."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        name = (meta.get("labels") or {}).get(ROLLOUT_LABEL)
        body = self._kube.get(rollouts(self._group), name, namespace) if name else None
        if body is not None:
            try:
                return Rollout.model_validate(body)
            except ValidationError:
                pass
        stand_in = {
            "apiVersion": self._experiments.api_version,
            "kind": "Rollout",
            "metadata": {"name": meta.get("name", ""), "namespace": namespace},
            "spec": {"strategy": {"canary": {}}},
        }
        return Rollout.model_validate(stand_in)

    def _apply(self, obj: Mapping[str, Any], spec: ExperimentSpec, rollout: Rollout, action: ExperimentAction) -> None:
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
        match action:
            case CreateTemplateReplicaSet(template=template_name, replicas=replicas):
                template = next(t for t in spec.templates if t.name == template_name)
                body = template_replica_set(obj, self._experiments.api_version, template, replicas)
                try:
                    self._kube.create(REPLICA_SETS, body)
                except ApiConflictError:  # it exists already (an earlier look stopped before its status write)
                    self._scale(namespace, body["metadata"]["name"], replicas)
            case ScaleTemplateReplicaSet(template=template_name, replicas=replicas):
                self._scale(namespace, replica_set_name(name, template_name), replicas)
            case MarkScaleDown(template=template_name, deadline=deadline):
                patch = {"metadata": {"annotations": {SCALE_DOWN_DEADLINE_ANNOTATION: iso(deadline)}}}
                self._kube.patch(REPLICA_SETS, replica_set_name(name, template_name), namespace, patch)
            case StartExperimentAnalysis():
                self._start_run(obj, spec, rollout, action)
            case TerminateExperimentAnalysis(run=run):
                self._terminate_run(namespace, run)

    def _scale(self, namespace: str, rs_name: str, replicas: int) -> None:
        try:
            self._kube.patch(REPLICA_SETS, rs_name, namespace, {"spec": {"replicas": replicas}})
        except NotFoundError:
            log.info("ReplicaSet %s/%s is gone; the next look creates it again if still wanted", namespace, rs_name)

    def _start_run(
        self, obj: Mapping[str, Any], spec: ExperimentSpec, rollout: Rollout, action: StartExperimentAnalysis
    ) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        if self._kube.get(self._runs, action.run, namespace) is not None:
            return
        extra = spec.analysis_run_metadata
        analysis = RolloutAnalysis.model_validate(
            {
                "templates": [
                    {"templateName": action.analysis.template_name, "clusterScope": action.analysis.cluster_scope}
                ],
                "args": [{"name": arg, "value": value} for arg, value in action.args],
                "dryRun": [entry.wire() for entry in spec.dry_run],
                "measurementRetention": [entry.wire() for entry in spec.measurement_retention],
            }
        )
        raw_spec = obj.get("spec") or {}
        revision = str((meta.get("labels") or {}).get(HASH_LABEL) or raw_spec.get("canaryRevision") or "")
        stable = (meta.get("annotations") or {}).get(STABLE_REVISION_ANNOTATION) or raw_spec.get("stableRevision")
        start = StartAnalysisRun(
            name=action.run,
            kind=RunKind.STEP,
            analysis=analysis,
            hash=revision,
            stable_hash=str(stable) if stable else None,
        )
        resolved = resolve_run_spec(self._kube, self._group, rollout, start)
        labels = {**(extra.labels if extra else {}), RUN_KIND_LABEL: EXPERIMENT_RUN_KIND}
        rollout_name = (meta.get("labels") or {}).get(ROLLOUT_LABEL)
        if rollout_name:
            labels[ROLLOUT_LABEL] = rollout_name  # so the controller measures it with the Rollout's runs
        metadata: dict[str, Any] = {"name": action.run, "namespace": namespace, "labels": labels}
        if extra and extra.annotations:
            metadata["annotations"] = dict(extra.annotations)
        if meta.get("uid"):
            metadata["ownerReferences"] = [owner_of(obj, self._experiments.api_version)]
        try:
            create_analysis_run(
                self._kube, self._group, metadata, resolved, revision=revision, stable=start.stable_hash
            )
        except ApiConflictError:
            return  # created meanwhile: the next look follows it

    def _terminate_run(self, namespace: str, run: str) -> None:
        obj = self._kube.get(self._runs, run, namespace)
        if obj is None or phase_of(obj).phase.completed or (obj.get("spec") or {}).get("terminate"):
            return
        try:
            self._kube.patch(self._runs, run, namespace, {"spec": {"terminate": True}})
        except NotFoundError:
            return

    def _fail(self, obj: Mapping[str, Any], message: str) -> float | None:
        """Make the Experiment Error with ``message``, as a run that cannot be measured is: it would fail the same
        way on every look, and its Rollout must see why (and abort) instead of waiting on it for ever. None once
        written; `RETRY_AFTER_ERROR` when even that failed (the next look tries again)."""
        try:
            written = self._write(obj, {"phase": "Error", "message": message})
        except AdapterError as error:
            log.warning("marking experiment %s as Error failed: %s", (obj.get("metadata") or {}).get("name"), error)
            return RETRY_AFTER_ERROR
        return None if written else RETRY_AFTER_ERROR

    def _write(self, obj: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Write ``status`` with the version read; False when the Experiment changed meanwhile (look again)."""
        meta = obj.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status}
        try:
            patch_status_blocking(self._kube, self._experiments, meta.get("name", ""), meta.get("namespace"), patch)
        except ApiConflictError:
            log.info("experiment %s changed while advanced; deciding again", meta.get("name"))
            return False
        except NotFoundError:
            return True  # deleted meanwhile: nothing left to run
        return True
