"""AnalysisRuns and Experiments as cluster resources: the Kubernetes `RunBackend`.

A run the core starts becomes an AnalysisRun object named as the core chose, labelled with its rollout and owned
by it (so it is garbage-collected with it), carrying the spec resolved from the AnalysisTemplates and
ClusterAnalysisTemplates it references (read from the API when the run starts). Its phase is read back from
``status.phase``: whoever measures it (`headway.runtimes.kubernetes.analysis.RunMeasurer` in this controller)
writes that; a run whose templates cannot be resolved is created in phase Error with the reason.
Terminating sets ``spec.terminate``, as Argo does.
Secret-backed args stay references (``valueFrom``); they are never resolved into the run.
"""

from __future__ import annotations

from typing import Any

from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.observation import RunState
from headway.core.templates import TemplateError
from headway.engine.runs import RunStates
from headway.platforms.kubernetes import ROLLOUT_LABEL, owner_reference
from headway.runtimes.kubernetes.analysis import resolve_run_spec
from headway.runtimes.kubernetes.client import BlockingKube, Kind, NotFoundError, analysis_runs
from headway.spec.rollout import Rollout
from headway.spec.status import RunPhase

RUN_KIND_LABEL = "headway.dev/run-kind"


def experiments(group: str) -> Kind:
    return Kind(group, "v1alpha1", "Experiment", "experiments")


def phase_of(obj: dict[str, Any]) -> RunState:
    """The run's phase as the core sees it; an unknown phase string is Pending (not yet measured)."""
    status = obj.get("status") or {}
    try:
        phase = RunPhase(status.get("phase") or RunPhase.PENDING)
    except ValueError:
        phase = RunPhase.PENDING
    return RunState(name=obj["metadata"]["name"], phase=phase, message=str(status.get("message") or ""))


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
        resolved = resolve_run_spec(self._kube, self._group, rollout, run)
        spec = {"metrics": []} if isinstance(resolved, TemplateError) else resolved.wire()
        spec["revision"] = run.hash
        if run.stable_hash:
            spec["stableRevision"] = run.stable_hash
        metadata = self._metadata(rollout, run.name, str(run.kind))
        extra = run.analysis.analysis_run_metadata
        if extra is not None:
            metadata["labels"] = {**extra.labels, **metadata["labels"]}
            metadata["annotations"] = dict(extra.annotations)
        created = self._kube.create(self._runs, {"metadata": metadata, "spec": spec})
        if isinstance(resolved, TemplateError):
            # A run that cannot be measured is created anyway, in phase Error, so the rollout sees why and
            # acts on it (abort), as Argo does; the /status subresource is where the phase lives.
            status = {"phase": "Error", "message": resolved.describe()}
            version = (created.get("metadata") or {}).get("resourceVersion")
            patch = {"metadata": {"resourceVersion": version}, "status": status}
            self._kube.patch(self._runs, run.name, rollout.metadata.namespace, patch, status=True)

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        self._terminate(self._runs, rollout, name)

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        if self._kube.get(self._experiments, experiment.name, rollout.metadata.namespace) is not None:
            return
        body = {
            "metadata": self._metadata(rollout, experiment.name, "experiment"),
            "spec": {**experiment.experiment.wire(), "canaryRevision": experiment.canary_hash},
        }
        self._kube.create(self._experiments, body)

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        self._terminate(self._experiments, rollout, name)

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        labels = {ROLLOUT_LABEL: rollout.name}
        namespace = rollout.metadata.namespace
        runs = {state.name: state for state in map(phase_of, self._kube.list(self._runs, namespace, labels))}
        if not self._uses_experiments(rollout):
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

    @staticmethod
    def _uses_experiments(rollout: Rollout) -> bool:
        canary = rollout.spec.strategy.canary
        return canary is not None and any(step.experiment is not None for step in canary.steps)
