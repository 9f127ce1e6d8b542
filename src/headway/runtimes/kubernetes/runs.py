"""AnalysisRuns and Experiments as cluster resources: the Kubernetes `RunBackend`.

A run the core starts becomes an AnalysisRun object named as the core chose, labelled with its rollout and owned
by it (so it is garbage-collected with it), carrying the spec resolved from the AnalysisTemplates and
ClusterAnalysisTemplates it references (read from the API when the run starts). Its phase is read back from
``status.phase``: whoever measures it (`headway.runtimes.kubernetes.analysis.RunMeasurer` in this controller)
writes that, and its measurements tell the rollout whether a run in progress has sound evidence yet
(`RunState.evidence_gap`). A run whose templates cannot be resolved, for any reason but the API failing (then the
pass is retried), is created in phase Error with the reason; one whose providers cannot measure it is made Error
by its first measurement.
Terminating sets ``spec.terminate``, as Argo does.
Secret-backed args stay references (``valueFrom``); they are never resolved into the run.

An experiment step becomes an Experiment as Argo's ``GetExperimentFromTemplate`` builds it: each template's pod
template, selector and minReadySeconds are copied from the stable or canary ReplicaSet (``specRef``), the step's
metadata merged into it, the analyses' arguments resolved against the Rollout (podTemplateHashValue, fieldRef).
The Rollout's pod-template-hash label is taken out of the copies: the experiment's own ReplicaSets carry the hash of
their template (`headway.runtimes.kubernetes.experiments`), so the Rollout's Services never select them. A step
that cannot be built (no stable ReplicaSet yet, an argument without a value) is created in phase Error, saying why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from headway.core import analysis as ladder
from headway.core import templates
from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.errors import AdapterError
from headway.core.observation import RunState
from headway.core.templates import TemplateError
from headway.engine.analysis import describe_exception
from headway.engine.runs import RunStates
from headway.kube.client import (
    REPLICA_SETS,
    RUN_KIND_LABEL,
    BlockingKube,
    Kind,
    NotFoundError,
    analysis_runs,
    experiments,
)
from headway.platforms.kubernetes import HASH_LABEL, ROLLOUT_LABEL, owner_reference, replica_set_name
from headway.runtimes.kubernetes.analysis import resolve_run_spec, uses_analysis
from headway.runtimes.kubernetes.status_writes import dropped, patch_status_blocking
from headway.spec.analysis import AnalysisRun, AnalysisRunSpec, AnalysisRunStatus
from headway.spec.experiment import ExperimentSpec
from headway.spec.rollout import Rollout, RolloutExperimentTemplate
from headway.spec.status import RunPhase

log = logging.getLogger(__name__)

STABLE_REVISION_ANNOTATION = "headway.dev/stable-revision"
"""On an Experiment of a Rollout's step: the stable revision's hash when it started (the canary's is its
``rollouts-pod-template-hash`` label, as in Argo)."""


def phase_of(obj: dict[str, Any]) -> RunState:
    """The run's phase as the core sees it; an unknown phase string is Pending (not yet measured)."""
    status = obj.get("status") or {}
    try:
        phase = RunPhase(status.get("phase") or RunPhase.PENDING)
    except ValueError:
        phase = RunPhase.PENDING
    return RunState(name=obj["metadata"]["name"], phase=phase, message=str(status.get("message") or ""))


def analysis_state(obj: dict[str, Any]) -> RunState:
    """An AnalysisRun as the core sees it: `phase_of`, plus, while it runs, why it has no sound evidence yet."""
    state = phase_of(obj)
    if state.phase.completed:
        return state
    try:
        run = AnalysisRun.model_validate({**obj, "apiVersion": obj.get("apiVersion") or "argoproj.io/v1alpha1"})
        gap = ladder.evidence_gap(run.spec, run.status or AnalysisRunStatus())
    except Exception as error:  # fail closed: a run that cannot be read proves nothing  # noqa: BLE001 - fail closed: any failure becomes an error result
        gap = f"the run cannot be read: {describe_exception(error)}"
    return replace(state, evidence_gap=gap)


def has_experiments(rollout: Rollout) -> bool:
    """Whether any canary step is an experiment, or the status still follows one (else there is nothing to
    advance: no API read)."""
    canary = rollout.spec.strategy.canary
    if canary is not None and any(step.experiment is not None for step in canary.steps):
        return True
    return bool(((rollout.status or {}).get("canary") or {}).get("currentExperiment"))


class KubernetesRunBackend:
    """Implements `headway.engine.runs.RunBackend` with AnalysisRun and Experiment objects."""

    def __init__(self, kube: BlockingKube, group: str) -> None:
        self._kube = kube
        self._group = group
        self._runs = analysis_runs(group)
        self._experiments = experiments(group)

    def _metadata(self, rollout: Rollout, name: str, kind: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": rollout.metadata.namespace,
            "labels": {ROLLOUT_LABEL: rollout.name, RUN_KIND_LABEL: kind},
        }
        if rollout.metadata.uid:
            metadata["ownerReferences"] = [owner_reference(rollout)]
        return metadata

    def start_analysis(self, rollout: Rollout, run: StartAnalysisRun) -> None:
        if self._kube.get(self._runs, run.name, rollout.metadata.namespace) is not None:
            return
        try:
            resolved: AnalysisRunSpec | TemplateError = resolve_run_spec(self._kube, self._group, rollout, run)
        except AdapterError:
            raise  # the API failed: the pass is retried and the run created then
        except Exception as error:  # anything else would fail the same way every pass: the run is Error, saying why
            log.exception("resolving the templates of AnalysisRun %s failed", run.name)
            resolved = TemplateError("templates", f"could not be resolved: {describe_exception(error)}")
        metadata = self._metadata(rollout, run.name, str(run.kind))
        extra = run.analysis.analysis_run_metadata
        if extra is not None:
            metadata["labels"] = {**extra.labels, **metadata["labels"]}
            metadata["annotations"] = dict(extra.annotations)
        create_analysis_run(self._kube, self._group, metadata, resolved, revision=run.hash, stable=run.stable_hash)

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        self._terminate(self._runs, rollout, name)

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        namespace = rollout.metadata.namespace
        if self._kube.get(self._experiments, experiment.name, namespace) is not None:
            return
        stable = self._replica_set(rollout, experiment.stable_hash)
        canary = self._replica_set(rollout, experiment.canary_hash)
        spec, problem = experiment_spec(rollout, experiment, stable=stable, canary=canary)
        metadata = self._metadata(rollout, experiment.name, "experiment")
        metadata["labels"][HASH_LABEL] = experiment.canary_hash  # Argo's label: the canary revision
        if experiment.stable_hash:
            # spec.stableRevision is not in the CRD's schema (a cluster prunes it): the runner reads this
            metadata["annotations"] = {STABLE_REVISION_ANNOTATION: experiment.stable_hash}
        created = self._kube.create(self._experiments, {"metadata": metadata, "spec": spec})
        problem = problem or lost_experiment_fields(spec, created)
        if problem is not None:
            status = {"phase": "Error", "message": problem}
            version = (created.get("metadata") or {}).get("resourceVersion")
            patch = {"metadata": {"resourceVersion": version}, "status": status}
            patch_status_blocking(self._kube, self._experiments, experiment.name, namespace, patch)

    def _replica_set(self, rollout: Rollout, pod_hash: str | None) -> dict[str, Any] | None:
        if not pod_hash:
            return None
        return self._kube.get(REPLICA_SETS, replica_set_name(rollout, pod_hash), rollout.metadata.namespace)

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        self._terminate(self._experiments, rollout, name)

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        labels = {ROLLOUT_LABEL: rollout.name}
        namespace = rollout.metadata.namespace
        if not uses_analysis(rollout) and not has_experiments(rollout):
            return {}, {}  # neither the spec nor the status has a run to follow: no list on every look
        runs = {state.name: state for state in map(analysis_state, self._kube.list(self._runs, namespace, labels))}
        if not has_experiments(rollout):
            return runs, {}
        found = self._kube.list(self._experiments, namespace, labels)
        return runs, {state.name: state for state in map(phase_of, found)}

    def _terminate(self, kind: Kind, rollout: Rollout, name: str) -> None:
        obj = self._kube.get(kind, name, rollout.metadata.namespace)
        if obj is None or phase_of(obj).phase.completed:
            return
        try:
            self._kube.patch(kind, name, rollout.metadata.namespace, {"spec": {"terminate": True}})
        except NotFoundError:
            return


def create_analysis_run(
    kube: BlockingKube,
    group: str,
    metadata: dict[str, Any],
    resolved: AnalysisRunSpec | TemplateError,
    *,
    revision: str,
    stable: str | None,
) -> None:
    """Create an AnalysisRun from its resolved spec; one whose templates could not be resolved is created anyway,
    in phase Error, so its owner sees why and acts on it (abort), as Argo does."""
    runs = analysis_runs(group)
    spec = {"metrics": []} if isinstance(resolved, TemplateError) else resolved.wire()
    metadata = {**metadata, "labels": dict(metadata.get("labels") or {})}
    if revision:
        spec["revision"] = revision
        metadata["labels"].setdefault(HASH_LABEL, revision)  # Argo's label; survives a schema that prunes spec
    if stable:
        spec["stableRevision"] = stable
        metadata["annotations"] = {**(metadata.get("annotations") or {}), STABLE_REVISION_ANNOTATION: stable}
    created = kube.create(runs, {"metadata": metadata, "spec": spec})
    problem = resolved.describe() if isinstance(resolved, TemplateError) else lost_run_fields(resolved, created)
    if problem is not None:
        # the phase lives in the status (its /status subresource where the CRD has one)
        status = {"phase": "Error", "message": problem}
        version = (created.get("metadata") or {}).get("resourceVersion")
        patch = {"metadata": {"resourceVersion": version}, "status": status}
        patch_status_blocking(kube, runs, metadata["name"], metadata.get("namespace"), patch)


PRUNED_ADVICE = (
    "the API server dropped {fields}: the cluster's {kind} CRD has no such field in its schema, so the {what} "
    "would not be what was asked; install the {kind} CRD of Headway's deploy/base or of a newer Argo Rollouts "
    "release, or leave the field out"
)


def _lost(kind: str, what: str, paths: list[str]) -> str | None:
    if not paths:
        return None
    shown = ", ".join(f"spec.{path}" for path in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return PRUNED_ADVICE.format(kind=kind, fields=shown, what=what)


def lost_run_fields(sent: AnalysisRunSpec, created: Mapping[str, Any]) -> str | None:
    """Why a created AnalysisRun cannot be trusted to measure what ``sent`` says, or None.

    An API server prunes the spec fields its CRD's schema does not name (Argo's CRDs of an older release than the
    templates': ``consecutiveSuccessLimit``, a provider's newer options): the run would then measure something
    else than its templates say, without a word. Both specs are compared through the model, so a field dropped
    with its default value (which means the same as leaving it out) is not a loss."""
    stored = {key: value for key, value in (created.get("spec") or {}).items() if key not in RUN_SPEC_EXTRAS}
    try:
        kept = AnalysisRunSpec.model_validate(stored).wire()
    except ValidationError as error:
        return f"the AnalysisRun as the cluster stored it is not valid: {describe_exception(error)}"
    return _lost("AnalysisRun", "run", dropped(sent.wire(), kept))


RUN_SPEC_EXTRAS = frozenset({"revision", "stableRevision"})
"""Spec fields Headway adds to a run for people reading it; the label and annotation carry the same."""
EXPERIMENT_SPEC_EXTRAS = frozenset({"canaryRevision", "stableRevision"})
"""Spec fields Headway adds to an Experiment; its label and `STABLE_REVISION_ANNOTATION` are read first."""
UNREAD_EXPERIMENT_FIELDS = re.compile(r"templates\[\d+\]\.(weight|service)(\.|$)")
"""Experiment template fields the experiment runner never reads (Argo's Experiment CRD has no ``weight`` and an
empty ``service``): their loss changes nothing Headway does."""


def lost_experiment_fields(sent: Mapping[str, Any], created: Mapping[str, Any]) -> str | None:
    """Why a created Experiment cannot be trusted to run what ``sent`` says, or None (see `lost_run_fields`)."""

    def parsed(spec: Mapping[str, Any]) -> dict[str, Any]:
        return ExperimentSpec.model_validate(
            {key: value for key, value in spec.items() if key not in EXPERIMENT_SPEC_EXTRAS}
        ).wire()

    try:
        wanted = parsed(sent)
        kept = parsed(created.get("spec") or {})
    except ValidationError as error:
        return f"the Experiment as the cluster stored it is not valid: {describe_exception(error)}"
    lost = [path for path in dropped(wanted, kept) if not UNREAD_EXPERIMENT_FIELDS.match(path)]
    return _lost("Experiment", "experiment", lost)


def _without_hash(labels: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (labels or {}).items() if key != HASH_LABEL}


def experiment_template(step: RolloutExperimentTemplate, replica_set: dict[str, Any]) -> dict[str, Any]:
    """One Experiment template from a step template and the ReplicaSet its ``specRef`` names (pure)."""
    rs_spec = replica_set.get("spec") or {}
    pod = dict(rs_spec.get("template") or {})
    meta = dict(pod.get("metadata") or {})
    labels = _without_hash(meta.get("labels"))
    annotations = dict(meta.get("annotations") or {})
    selector = dict(step.selector) if step.selector is not None else dict(rs_spec.get("selector") or {})
    match_labels = _without_hash(selector.get("matchLabels"))
    if step.metadata is not None:  # Argo adds the step's labels to the selector too
        labels.update(step.metadata.labels)
        match_labels.update(step.metadata.labels)
        annotations.update(step.metadata.annotations)
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    selector["matchLabels"] = match_labels
    template: dict[str, Any] = {
        "name": step.name,
        "replicas": step.replicas if step.replicas is not None else 1,
        "minReadySeconds": int(rs_spec.get("minReadySeconds") or 0),
        "selector": selector,
        "template": {**pod, "metadata": meta},
    }
    if step.service is not None:
        template["service"] = step.service
    if step.weight is not None:
        template["weight"] = step.weight
    return template


def experiment_spec(
    rollout: Rollout,
    experiment: StartExperiment,
    *,
    stable: dict[str, Any] | None,
    canary: dict[str, Any] | None,
) -> tuple[dict[str, Any], str | None]:
    """The Experiment's spec for a Rollout's experiment step, and the first problem building it (None: none).

    ``stable``/``canary`` are the ReplicaSets of the stable and canary revisions as read from the API."""
    step = experiment.experiment
    at = "experiment"
    problem: str | None = None
    built: list[dict[str, Any]] = []
    for index, template in enumerate(step.templates):
        source = stable if template.spec_ref == "stable" else canary
        if source is None:
            wanted = experiment.stable_hash if template.spec_ref == "stable" else experiment.canary_hash
            problem = problem or (
                f"{at}.templates[{index}].specRef: no {template.spec_ref} ReplicaSet"
                + (f" {replica_set_name(rollout, wanted)}" if wanted else " (the rollout has no stable revision)")
            )
            continue
        built.append(experiment_template(template, source))
    analyses: list[dict[str, Any]] = []
    for index, analysis in enumerate(step.analyses):
        values = templates.rollout_args(
            analysis.args, rollout, stable_hash=experiment.stable_hash, latest_hash=experiment.canary_hash
        )
        if isinstance(values, TemplateError):
            problem = problem or f"{at}.analyses[{index}].{values.describe()}"
            values = {}
        entry: dict[str, Any] = {
            "name": analysis.name,
            "templateName": analysis.template_name,
            "args": [{"name": name, "value": value} for name, value in values.items()],
        }
        if analysis.cluster_scope:
            entry["clusterScope"] = True
        if analysis.required_for_completion:
            entry["requiredForCompletion"] = True
        analyses.append(entry)
    spec: dict[str, Any] = {
        "templates": built,
        "progressDeadlineSeconds": rollout.spec.progress_deadline(),
        "analyses": analyses,
        "canaryRevision": experiment.canary_hash,
    }
    if step.duration is not None:
        spec["duration"] = step.duration
    if step.dry_run:
        spec["dryRun"] = list(step.dry_run)
    if experiment.stable_hash:
        spec["stableRevision"] = experiment.stable_hash
    return spec, problem
