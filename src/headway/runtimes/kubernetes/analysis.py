"""AnalysisRuns in the cluster, measured by the controller: template resolution, measurement, history clean-up.

The controller is the analysis controller too (there is no second process to run), so each Rollout's worker
measures that Rollout's running AnalysisRuns just before its pass, with the in-process executor's logic
(`headway.engine.analysis.AnalysisExecutor`) over the run as the API server holds it: one executor per run and
measurement, loaded from the object and dropped afterwards, so the controller keeps no analysis state per Rollout
and a restarted (or newly elected) controller carries on from ``status`` alone. Results go to the run's status
(its /status subresource, or the run itself under Argo's CRD, which has none: `status_writes`) with its
resourceVersion, so a concurrent writer (a user terminating the run, another replica) makes the write
fail with a conflict and the next pass measures again from the newer object instead of clobbering it.

Secret arguments stay ``valueFrom.secretKeyRef`` in the run; their values are read from the Secret right before
each measurement and handed to the executor only (it masks them in messages); a Secret that cannot be read is an
Error measurement of the metric that needs it, like any other failed query.

Runs are measured one by one and fail closed, each on its own: the API failing while one run is measured leaves
that run to the next pass (it is measured again soon), and anything else going wrong with a run (a bug, a status
the API refuses) makes that run Error with the reason, so its rollout aborts; the other runs are measured and
written either way, and the history is collected whatever happened to them.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from headway.core import templates
from headway.core.actions import StartAnalysisRun
from headway.core.errors import AdapterError
from headway.engine import admission
from headway.engine.analysis import DEFAULT_MEASURE_TIMEOUT, AnalysisExecutor, describe_exception
from headway.kube.client import (
    JOBS,
    SECRETS,
    ApiConflictError,
    BlockingKube,
    InvalidObjectError,
    KubeClient,
    NotFoundError,
    analysis_runs,
    analysis_templates,
    cluster_analysis_templates,
)
from headway.platforms.kubernetes import ROLLOUT_LABEL
from headway.providers.base import MetricProvider
from headway.providers.k8s_job import KubernetesJobProvider
from headway.providers.registry import ProviderRegistry, default_registry
from headway.runtimes.kubernetes.status_writes import patch_status
from headway.spec.analysis import AnalysisRun, AnalysisRunSpec, AnalysisTemplate, ClusterAnalysisTemplate
from headway.spec.rollout import Rollout

log = logging.getLogger(__name__)

DEFAULT_SUCCESSFUL_RUN_HISTORY = 5
DEFAULT_UNSUCCESSFUL_RUN_HISTORY = 5
"""Argo's defaults for ``spec.analysis.successfulRunHistoryLimit`` / ``unsuccessfulRunHistoryLimit``."""

COMPLETED = {"Successful", "Failed", "Error", "Inconclusive"}
API_RETRY_SECONDS = 5.0
"""How soon a run is measured again after the API failed while it was being measured or written."""


class ProviderTable(Mapping[str, MetricProvider]):
    """A provider registry seen as the mapping the executor asks; providers are built on first use."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry

    def __getitem__(self, type_: str) -> MetricProvider:
        try:
            return self._registry.get(type_)
        except LookupError:
            raise KeyError(type_) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.known())

    def __len__(self) -> int:
        return len(self._registry.known())


def resolve_run_spec(
    kube: BlockingKube, group: str, rollout: Rollout, run: StartAnalysisRun
) -> AnalysisRunSpec | templates.TemplateError:
    """The run's spec from the templates the analysis references, read from the API (one GET per template)."""
    namespace = rollout.metadata.namespace
    found: dict[str, AnalysisTemplate] = {}
    cluster: dict[str, ClusterAnalysisTemplate] = {}
    for index, ref in enumerate(run.analysis.templates):
        kind = cluster_analysis_templates(group) if ref.cluster_scope else analysis_templates(group)
        obj = kube.get(kind, ref.template_name, None if ref.cluster_scope else namespace)
        if obj is None:
            continue  # resolve_analysis names the missing template
        try:
            if ref.cluster_scope:
                cluster[ref.template_name] = ClusterAnalysisTemplate.model_validate(obj)
            else:
                found[f"{namespace}/{ref.template_name}"] = AnalysisTemplate.model_validate(obj)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return templates.TemplateError(
                f"templates[{index}]", f"{kind.kind} {ref.template_name!r}: {where}: {first['msg']}"
            )
    resolved = templates.resolve_analysis(
        run.analysis,
        rollout,
        templates=found,
        cluster_templates=cluster,
        stable_hash=run.stable_hash,
        latest_hash=run.hash,
    )
    # A template this mode cannot measure (the embedded proxy's counters) was not refused at its apply (nothing
    # here sees that): the run is created in Error saying so, instead of erring measurement after measurement.
    unrunnable = (
        admission.run_problem(resolved, admission.Mode.KUBERNETES) if isinstance(resolved, AnalysisRunSpec) else None
    )
    return templates.TemplateError("templates", unrunnable) if unrunnable is not None else resolved


ANALYSIS_KEYS = frozenset({"analysis", "prePromotionAnalysis", "postPromotionAnalysis"})


RUN_RECORDS = {
    "canary": ("currentStepAnalysisRunStatus", "currentBackgroundAnalysisRunStatus", "currentExperiment"),
    "blueGreen": ("prePromotionAnalysisRunStatus", "postPromotionAnalysisRunStatus"),
}


def status_follows_runs(rollout: Rollout) -> bool:
    """Whether the Rollout's status still names a run or experiment: one started before an edit took the analysis
    (or experiment step) out of the spec must still be measured, advanced and terminated to its end."""
    status = rollout.status or {}
    return any((status.get(part) or {}).get(key) for part, keys in RUN_RECORDS.items() for key in keys)


def uses_analysis(rollout: Rollout) -> bool:
    """Whether the strategy references analysis anywhere, or the status still follows a run (else there is
    nothing to measure: no API read)."""
    if status_follows_runs(rollout):
        return True

    def walk(value: object) -> bool:
        if isinstance(value, Mapping):
            return any(key in ANALYSIS_KEYS or walk(item) for key, item in value.items())
        if isinstance(value, list):
            return any(walk(item) for item in value)
        return False

    return walk(rollout.spec.strategy.wire())


def history_limits(rollout: Rollout) -> tuple[int, int]:
    """``spec.analysis.{successful,unsuccessful}RunHistoryLimit`` (Argo defaults 5/5)."""
    given = rollout.spec.analysis
    raw: Mapping[str, Any] = given if isinstance(given, Mapping) else {}

    def limit(name: str, default: int) -> int:
        value = raw.get(name, default)
        return value if isinstance(value, int) and value >= 0 else default

    return (
        limit("successfulRunHistoryLimit", DEFAULT_SUCCESSFUL_RUN_HISTORY),
        limit("unsuccessfulRunHistoryLimit", DEFAULT_UNSUCCESSFUL_RUN_HISTORY),
    )


class RunMeasurer:
    """Measures the running AnalysisRuns of one Rollout at a time; keeps nothing between calls."""

    def __init__(
        self,
        client: KubeClient,
        group: str,
        providers: Mapping[str, MetricProvider],
        *,
        measure_timeout: float = DEFAULT_MEASURE_TIMEOUT,
        on_finished: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        """``on_finished(run phase, metric phases)`` is told of each run this measurer completes (metrics)."""
        self._on_finished = on_finished
        self._client = client
        self._runs = analysis_runs(group)
        self._providers = providers
        self._timeout = measure_timeout

    async def measure(self, namespace: str, rollout: str, now: datetime, limits: tuple[int, int]) -> float | None:
        """Measure what is due, write it to /status, trim the history; seconds until the next measurement is due."""
        found = await self._client.list(self._runs, namespace, {ROLLOUT_LABEL: rollout})
        due: list[datetime] = []
        for obj in found:
            if ((obj.get("status") or {}).get("phase") or "") in COMPLETED:
                continue
            when = await self._measure_isolated(obj, now)
            if when is not None:
                due.append(when)
        try:
            await self._collect(found, limits)
        except AdapterError as error:
            log.warning("collecting the old AnalysisRuns of %s/%s failed: %s", namespace, rollout, error)
        if not due:
            return None
        return max((min(due) - now).total_seconds(), 0.0)

    async def _measure_isolated(self, obj: dict[str, Any], now: datetime) -> datetime | None:
        """`_measure_one`, so that nothing about one run stops the others (see the module docstring)."""
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
        try:
            return await self._measure_one(obj, now)
        except NotFoundError:
            return None  # deleted while measured: nothing left to measure
        except InvalidObjectError as error:  # the API refuses what was measured: no retry would change that
            log.error("AnalysisRun %s/%s: the measured status was refused: %s", namespace, name, error)
            await self._fail(name, namespace, meta, f"the measured status was refused by the API: {error}", now)
            return None
        except AdapterError as error:  # the API, not the run: measure it again soon
            log.warning("measuring AnalysisRun %s/%s: %s; again in %gs", namespace, name, error, API_RETRY_SECONDS)
            return now + timedelta(seconds=API_RETRY_SECONDS)
        except Exception as error:  # fail closed: a run we cannot measure is Error, and its rollout aborts
            log.exception("measuring AnalysisRun %s/%s failed; it is Error", namespace, name)
            message = f"the analysis could not be measured: {describe_exception(error)}"
            await self._fail(name, namespace, meta, message, now)
            return None

    async def _fail(self, name: str, namespace: str, meta: Mapping[str, Any], message: str, now: datetime) -> None:
        """Write the run as Error with ``message`` (best effort: if even that fails, the next pass tries again)."""
        status = {"phase": "Error", "message": message, "completedAt": _iso(now)}
        try:
            await self._write(name, namespace, meta, status)
        except Exception:
            log.exception("marking AnalysisRun %s/%s as Error failed", namespace, name)

    async def _measure_one(self, obj: dict[str, Any], now: datetime) -> datetime | None:
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
        try:
            run = AnalysisRun.model_validate({**obj, "apiVersion": obj.get("apiVersion") or self._runs.api_version})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            await self._write(name, namespace, meta, {"phase": "Error", "message": f"{where}: {first['msg']}"})
            return None
        secrets = await self._secrets(run)
        executor = AnalysisExecutor(
            templates={}, providers=self._providers, secrets=secrets.lookup, measure_timeout=self._timeout
        )
        executor.load(run)
        await executor.tick(now)
        after = executor.run(name)
        if after is not None and after.status is not None and after.status != run.status:
            written = await self._write(name, namespace, meta, after.status.wire())
            if written and after.status.phase.completed and self._on_finished is not None:
                self._on_finished(after.status.phase.value, [r.phase.value for r in after.status.metric_results])
        return executor.next_due()

    async def _write(self, name: str, namespace: str, meta: Mapping[str, Any], status: dict[str, Any]) -> bool:
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status}
        try:
            await patch_status(self._client, self._runs, name, namespace, patch)
        except ApiConflictError:
            log.info("AnalysisRun %s/%s changed while measured; measuring again on the next pass", namespace, name)
            return False
        return True

    async def _secrets(self, run: AnalysisRun) -> _Secrets:
        """The secretKeyRef values of the run's arguments, read now (missing ones are left out: the executor says;
        one the API fails to give is an Error measurement saying why, not a crash of every run's measurement)."""
        values: dict[tuple[str, str], str] = {}
        problems: dict[tuple[str, str], str] = {}
        for arg in run.spec.args:
            ref = arg.value_from.secret_key_ref if arg.value is None and arg.value_from is not None else None
            if ref is None or (ref.name, ref.key) in values or (ref.name, ref.key) in problems:
                continue
            try:
                secret = await self._client.get(SECRETS, ref.name, run.metadata.namespace)
            except AdapterError as error:
                problems[(ref.name, ref.key)] = f"reading secret {ref.name!r} failed: {error}"
                continue
            encoded = ((secret or {}).get("data") or {}).get(ref.key)
            if isinstance(encoded, str):
                try:
                    values[(ref.name, ref.key)] = base64.b64decode(encoded, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    continue
        return _Secrets(values, problems)

    async def _collect(self, found: list[dict[str, Any]], limits: tuple[int, int]) -> None:
        """Delete completed runs beyond the history limits, oldest first (Argo's GC of AnalysisRuns)."""
        successful, unsuccessful = limits
        done = [obj for obj in found if ((obj.get("status") or {}).get("phase") or "") in COMPLETED]
        done.sort(key=_age, reverse=True)
        good = [obj for obj in done if obj["status"]["phase"] == "Successful"]
        bad = [obj for obj in done if obj["status"]["phase"] != "Successful"]
        for obj in [*good[successful:], *bad[unsuccessful:]]:
            meta = obj["metadata"]
            await self._client.delete(self._runs, meta["name"], meta.get("namespace"))


def _age(obj: Mapping[str, Any]) -> tuple[str, int]:
    """Creation order by timestamp (whole seconds); among runs created in the same second, the one written last
    (highest resourceVersion: etcd revisions grow, though opaque by contract, so only ever a tie-breaker)."""
    meta = obj.get("metadata") or {}
    version = str(meta.get("resourceVersion") or "")
    return str(meta.get("creationTimestamp") or ""), int(version) if version.isdigit() else 0


class ClusterJobs:
    """`headway.providers.k8s_job.JobApi` over the client: Jobs owned by their AnalysisRun."""

    def __init__(self, client: KubeClient, group: str) -> None:
        self._client = client
        self._runs = analysis_runs(group)

    async def create_job(self, namespace: str, run_name: str, body: dict[str, Any]) -> None:
        run = await self._client.get(self._runs, run_name, namespace)
        if run is not None:
            meta = run["metadata"]
            owner = {
                "apiVersion": self._runs.api_version,
                "kind": self._runs.kind,
                "name": meta["name"],
                "uid": meta.get("uid", ""),
                "controller": True,
                "blockOwnerDeletion": True,
            }
            body = {**body, "metadata": {**body["metadata"], "ownerReferences": [owner]}}
        try:
            await self._client.create(JOBS, body)
        except ApiConflictError:
            return  # AlreadyExists: this measurement's Job, created by an earlier attempt

    async def read_job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return await self._client.get(JOBS, name, namespace)

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._client.delete(JOBS, name, namespace)


def cluster_providers(client: KubeClient, group: str) -> ProviderTable:
    """The default providers, with ``job`` running batch/v1 Jobs in the cluster instead of local processes."""
    registry = default_registry()
    registry.register(
        KubernetesJobProvider.type, lambda: KubernetesJobProvider(ClusterJobs(client, group)), replace=True
    )
    return ProviderTable(registry)


class _Secrets:
    def __init__(
        self, values: Mapping[tuple[str, str], str], problems: Mapping[tuple[str, str], str] | None = None
    ) -> None:
        self._values = values
        self._problems = problems or {}

    def lookup(self, namespace: str, name: str, key: str) -> str:
        try:
            return self._values[(name, key)]
        except KeyError:
            problem = self._problems.get((name, key))
            if problem is not None:
                raise LookupError(problem) from None
            raise LookupError(f"secret {name!r} key {key!r} not found in namespace {namespace!r}") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
