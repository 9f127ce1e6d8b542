"""The ``job`` metric provider in a cluster: each measurement is a batch/v1 Job, as in Argo Rollouts.

The measurement starts by creating a Job from the metric's ``job`` block (its spec passed through as written,
its labels and annotations added to ours) and is pending (handle ``namespace/name``) until the Job finishes.
Complete (or a succeeded pod) is a successful measurement (value 1). Failed is an error carrying the Job's
reason, marked ``phase: Failed`` as the local job provider marks a failed command; the core makes that a Failed
measurement, which counts against ``failureLimit`` as in Argo (a Job that could not run at all is an Error).

The API calls go through the `JobApi` seam, which the Kubernetes runtime implements with its client module (it
also makes the run own the Job, so the Job is garbage-collected with the run). Job names derive from the run,
the metric and the pass's clock reading, so each measurement gets its own Job within the 63-character limit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from headway.core.errors import AdapterError
from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric

RUN_LABEL = "headway.dev/analysis-run"
METRIC_LABEL = "headway.dev/metric"
NAME_LIMIT = 63


class JobApi(Protocol):
    """The cluster calls the provider needs; implemented by the Kubernetes runtime."""

    async def create_job(self, namespace: str, run_name: str, body: dict[str, Any]) -> None:
        """Create the Job, owned by AnalysisRun ``run_name``; a Job of that name that exists already is fine."""
        ...

    async def read_job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Job as the API server has it, None when it does not exist."""
        ...

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods; a missing Job is already deleted."""
        ...


def job_name(run_name: str, metric: str, started: str) -> str:
    """A DNS-1123 name unique to one measurement: ``<run>-<metric>-<hash of run, metric, start>``."""
    base = re.sub(r"[^a-z0-9-]+", "-", f"{run_name}-{metric}".lower())
    digest = hashlib.sha256(f"{run_name}/{metric}/{started}".encode()).hexdigest()[:10]
    return f"{base[: NAME_LIMIT - len(digest) - 1].strip('-')}-{digest}"


class KubernetesJobProvider:
    """Measures a ``job`` metric by running a batch/v1 Job in the run's namespace."""

    type: ClassVar[str] = "job"

    def __init__(self, api: JobApi) -> None:
        self._api = api

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        job = metric.provider.job
        if job is None:
            return ProviderResult(error=f"metric {metric.name!r} has no job provider block")
        name = job_name(context.run_name, metric.name, context.now.isoformat())
        labels = {**job.metadata.labels, RUN_LABEL: context.run_name, METRIC_LABEL: metric.name}
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": context.namespace,
                "labels": labels,
                "annotations": dict(job.metadata.annotations),
            },
            "spec": job.spec,
        }
        try:
            await self._api.create_job(context.namespace, context.run_name, body)
        except AdapterError as error:
            return ProviderResult(error=f"job: cannot create Job {name}: {error}")
        return ProviderResult(pending=f"{context.namespace}/{name}", metadata={"job": name})

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        namespace, _, name = pending.rpartition("/")
        try:
            job = await self._api.read_job(namespace or context.namespace, name)
        except AdapterError as error:
            return ProviderResult(pending=pending, metadata={"job": name, "lastError": str(error)[:200]})
        if job is None:
            return ProviderResult(error=f"job: Job {name} was deleted before it finished", metadata={"job": name})
        status = job.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Failed" in conditions:
            failed = conditions["Failed"]
            why = ": ".join(str(part) for part in (failed.get("reason"), failed.get("message")) if part)
            return ProviderResult(
                error=f"job: Job {name} failed" + (f": {why}" if why else ""),
                metadata={"job": name, "phase": "Failed"},
            )
        if "Complete" in conditions or int(status.get("succeeded") or 0) > 0:
            return ProviderResult(value=1, metadata={"job": name})
        return ProviderResult(pending=pending, metadata={"job": name})

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Terminating a run deletes its running Job (Argo does the same); the handle is ``namespace/name``."""
        namespace, _, name = pending.rpartition("/")
        try:
            await self._api.delete_job(namespace, name)
        except AdapterError:
            return  # the run is terminated either way; the Job goes with the run (it owns it)
