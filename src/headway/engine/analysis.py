"""The in-process analysis executor: AnalysisRuns measured by metric providers, judged by the pure core.

It implements `headway.engine.runs.RunBackend` for the embedded mode and the simulator (the Kubernetes runtime
keeps AnalysisRun objects in the API server instead, driven by the same core functions). Starting a run resolves
the Rollout's templates (`headway.core.templates`) into an AnalysisRun held as plain data, so a store can save it;
`observe` reads phases only, never measures; the caller's timer calls `tick(now)`, which measures the metrics that
are due, concurrently, through the providers it was given, and feeds every result through `headway.core.analysis`.

A failed query is data: a provider error, a crash, a timeout or an unknown provider type becomes a measurement in
phase Error with a message, never an exception out of `tick`. Secret arguments (``valueFrom.secretKeyRef``) are
read through the injected resolver at measurement time, substituted into that measurement's metric only, and
their values are masked in measurement messages: they are never written into the run.

Judge metrics measure one window of counts per interval and are judged by `headway.core.judge` over every window
so far (kept in the metric result, so measurement retention cannot lose them)::

    provider:
      plugin:
        headway.dev/judge:
          source: proxy            # who counts: a registered provider type (default: the one registered as
          proxy: {window: 60s}     #   headway.dev/judge); its own plugin block, passed on as is
          badEvents: errors        # with proxy counters: errors (default) or slow
          alpha: 0.01              # JudgeConfig, camelCase: alpha, margin, toleratedRatio, minCanaryRequests
          toleratedRatio: 1.5

The counting provider answers ``{canaryRequests, canaryBad, stableRequests, stableBad}`` or the proxy's
per-revision counters. Experiments are not run here: starting one records it in phase
Error with a message saying so.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from headway.core import analysis as ladder
from headway.core import templates
from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.observation import RunState
from headway.engine.runs import RunStates
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.spec.analysis import (
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunSpec,
    AnalysisRunStatus,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    Measurement,
    Metric,
)
from headway.spec.base import ObjectMeta
from headway.spec.rollout import Rollout
from headway.spec.status import RunPhase

ROLLOUT_LABEL = "rollouts-pod-template-hash"
OWNER_ANNOTATION = "headway.dev/rollout"
EXPERIMENTS_UNSUPPORTED = "experiments are not supported by the in-process analysis executor"
DEFAULT_MEASURE_TIMEOUT = 60.0
JUDGE_MISSING = "this build has no statistical judge (headway.core.judge)"

SecretResolver = Callable[[str, str, str], str]
"""(namespace, secret name, key) → value; raises LookupError when there is no such secret or key."""


class EnvironmentSecrets:
    """Secrets for the embedded mode: a file ``<directory>/<name>/<key>``, else the variable ``<NAME>_<KEY>``.

    Variable names are upper-cased with every other character turned into ``_`` (``db-creds``/``password`` →
    ``DB_CREDS_PASSWORD``)."""

    def __init__(self, environ: Mapping[str, str] | None = None, directory: Path | None = None) -> None:
        self.environ = environ if environ is not None else os.environ
        self.directory = directory

    def __call__(self, namespace: str, name: str, key: str) -> str:
        if self.directory is not None:
            path = self.directory / name / key
            if path.is_file():
                return path.read_text().rstrip("\n")
        variable = re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())
        if variable in self.environ:
            return self.environ[variable]
        where = f"file {self.directory / name / key} or " if self.directory is not None else ""
        raise LookupError(f"secret {name!r} key {key!r} not found (looked for {where}environment variable {variable})")


@dataclass
class _Run:
    run: AnalysisRun
    rollout: str


@dataclass
class AnalysisExecutor:
    """Implements `headway.engine.runs.RunBackend` by measuring AnalysisRuns in this process."""

    templates: Mapping[str, AnalysisTemplate]
    providers: Mapping[str, MetricProvider]
    cluster_templates: Mapping[str, ClusterAnalysisTemplate] = field(default_factory=dict)
    secrets: SecretResolver | None = None
    measure_timeout: float = DEFAULT_MEASURE_TIMEOUT
    runs: dict[str, _Run] = field(default_factory=dict)
    experiments: dict[str, tuple[str, RunState]] = field(default_factory=dict)

    # --- the RunBackend Protocol -------------------------------------------------------------------------

    def start_analysis(self, rollout: Rollout, run: StartAnalysisRun) -> None:
        if run.name in self.runs:
            return
        key = _key(rollout)
        resolved = templates.resolve_analysis(
            run.analysis,
            rollout,
            templates=self.templates,
            cluster_templates=self.cluster_templates,
            stable_hash=run.stable_hash,
            latest_hash=run.hash,
        )
        extra = run.analysis.analysis_run_metadata
        metadata = ObjectMeta(
            name=run.name,
            namespace=rollout.metadata.namespace,
            labels={**(extra.labels if extra else {}), ROLLOUT_LABEL: run.hash, "headway.dev/kind": run.kind.value},
            annotations={**(extra.annotations if extra else {}), OWNER_ANNOTATION: key},
        )
        if isinstance(resolved, templates.TemplateError):
            spec = AnalysisRunSpec(metrics=[])
            status = AnalysisRunStatus(phase=AnalysisPhase.ERROR, message=f"{resolved.describe()}")
        else:
            spec, status = resolved, AnalysisRunStatus()
        model = AnalysisRun(api_version="argoproj.io/v1alpha1", metadata=metadata, spec=spec, status=status)
        self.runs[run.name] = _Run(model, key)

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        held = self.runs.get(name)
        if held is None or self._status(held).phase.completed:
            return
        held.run = held.run.model_copy(update={"spec": ladder.terminate(held.run.spec)})

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        if experiment.name not in self.experiments:
            state = RunState(name=experiment.name, phase=RunPhase.ERROR, message=EXPERIMENTS_UNSUPPORTED)
            self.experiments[experiment.name] = (_key(rollout), state)

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        """Experiments never run here, so there is nothing to stop."""

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        key = _key(rollout)
        # Copies first (atomic in CPython): the embedded daemon reads runs while its worker thread starts new ones.
        analysis = {name: self._state(held) for name, held in list(self.runs.items()) if held.rollout == key}
        experiments = {name: state for name, (owner, state) in list(self.experiments.items()) if owner == key}
        return analysis, experiments

    # --- measuring --------------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> datetime | None:
        """Measure every due metric of every run, assess them, and return when something is next due."""
        await asyncio.gather(*(self._advance(held, now) for held in self.runs.values()))
        return self.next_due()

    def next_due(self) -> datetime | None:
        """The earliest time any unfinished run needs `tick` again."""
        times = [
            when
            for held in self.runs.values()
            if (when := ladder.next_measurement_time(held.run.spec, self._status(held))) is not None
        ]
        return min(times, default=None)

    def run(self, name: str) -> AnalysisRun | None:
        """The run as plain data (spec and status), for stores, the CLI and tests."""
        held = self.runs.get(name)
        return held.run if held is not None else None

    def owner(self, name: str) -> str | None:
        """The ``namespace/name`` of the rollout that started run ``name`` (None for an unknown run)."""
        held = self.runs.get(name)
        return held.rollout if held is not None else None

    def load(self, run: AnalysisRun) -> None:
        """Adopt a run saved earlier (by a store), keyed by its name; its owner comes from its annotation."""
        owner = run.metadata.annotations.get(OWNER_ANNOTATION, "")
        self.runs[run.metadata.name] = _Run(run, owner)

    async def _advance(self, held: _Run, now: datetime) -> None:
        spec, status = held.run.spec, self._status(held)
        if status.phase.completed:
            return
        if status.started_at is None:
            status = status.model_copy(update={"started_at": ladder.iso(now), "phase": AnalysisPhase.RUNNING})
        tasks = ladder.due(spec, status, now)
        dry = ladder.dry_run_metrics(spec)
        outcomes = await asyncio.gather(*(self._measure(held.run, task, status, now) for task in tasks))
        for task, (measurement, window) in zip(tasks, outcomes, strict=True):
            dry_run = task.metric.name in dry
            if window is not None:
                status = ladder.with_window(status, task.metric, window, dry_run=dry_run)
            status = ladder.record(status, task.metric, measurement, dry_run=dry_run)
            if window is not None:
                status = ladder.summarise_judge(status, task.metric.name, measurement)
        status, _ = ladder.assess(spec, status, now)
        held.run = held.run.model_copy(update={"status": status})

    async def _measure(
        self, run: AnalysisRun, task: ladder.Due, status: AnalysisRunStatus, now: datetime
    ) -> tuple[Measurement, tuple[int, int, int, int] | None]:
        started = task.pending.started_at if task.pending is not None else None
        metric, secrets, problem = self._resolve_secrets(run, task.metric)
        if problem is not None:
            return _error(problem, now, started), None
        try:
            provider = self._provider(metric)
        except LookupError as error:
            return _error(str(error).strip("'\""), now, started), None
        context = MeasureContext(
            args=templates.values_of(run.spec.args) | secrets,
            now=now,
            namespace=run.metadata.namespace,
            run_name=run.metadata.name,
        )
        if task.cancel and task.handle is not None:
            await self._guard(provider.cancel(metric, task.handle))
            return Measurement(
                phase=AnalysisPhase.SUCCESSFUL,
                message=ladder.TERMINATED,
                started_at=started,
                finished_at=ladder.iso(now),
            ), None
        asked = _source_metric(metric)
        call = provider.poll(asked, task.handle, context) if task.handle else provider.start(asked, context)
        result = await self._guard(call)
        result = _masked(result, secrets.values())
        if ladder.is_judge(metric) and result.error is None and result.pending is None:
            return self._judge(metric, result, status, now, started)
        return ladder.measure(metric, result, now, started_at=started), None

    def _judge(
        self, metric: Metric, result: ProviderResult, status: AnalysisRunStatus, now: datetime, started: str | None
    ) -> tuple[Measurement, tuple[int, int, int, int] | None]:
        window = ladder.parse_window(result.value, bad=judge_bad_events(metric))
        if isinstance(window, str):
            return _error(window, now, started), None
        config = judge_config(metric)
        if isinstance(config, str):
            return _error(config, now, started), None
        history = [*ladder.windows(status.result(metric.name)), window]
        judging = _judging()
        if judging is None:
            return _error(JUDGE_MISSING, now, started), None
        outcome = judging.judge([judging.Window(*counts) for counts in history], config)
        return ladder.judge_measurement(window, outcome, now, started_at=started), window

    async def _guard(self, call: Any) -> ProviderResult:
        """A provider call bounded in time; a crash or a timeout becomes an error result, not an exception."""
        try:
            result = await asyncio.wait_for(call, timeout=self.measure_timeout)
        except TimeoutError:
            return ProviderResult(error=f"the provider did not answer within {self.measure_timeout:g}s")
        except Exception as error:  # a provider bug must not stop the other runs' measurements
            return ProviderResult(error=f"the provider failed: {type(error).__name__}: {error}")
        return result if isinstance(result, ProviderResult) else ProviderResult()

    def _provider(self, metric: Metric) -> MetricProvider:
        kind = metric.provider.kind
        if kind == "plugin":
            plugins = metric.provider.plugin or {}
            if len(plugins) != 1:
                raise LookupError(f"metric {metric.name!r}: provider.plugin must name exactly one plugin")
            kind = next(iter(plugins))
            config = plugins[kind]
            if kind == ladder.JUDGE_PLUGIN and isinstance(config, Mapping) and isinstance(config.get("source"), str):
                kind = config["source"]
        provider = self.providers.get(kind)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise LookupError(f"metric {metric.name!r}: no metric provider for type {kind!r} (known: {known})")
        return provider

    def _resolve_secrets(self, run: AnalysisRun, metric: Metric) -> tuple[Metric, dict[str, str], str | None]:
        secret_args = [arg for arg in run.spec.args if arg.value is None and arg.value_from is not None]
        if not secret_args:
            return metric, {}, None
        values: dict[str, str] = {}
        for arg in secret_args:
            assert arg.value_from is not None
            ref = arg.value_from.secret_key_ref
            if ref is None:
                return metric, {}, f"args.{arg.name}: valueFrom.fieldRef is only resolved from a Rollout"
            if self.secrets is None:
                return metric, {}, f"args.{arg.name}: no secret resolver is configured"
            try:
                values[arg.name] = self.secrets(run.metadata.namespace, ref.name, ref.key)
            except LookupError as error:
                return metric, {}, f"args.{arg.name}: {str(error).strip(chr(39) + chr(34))}"
        resolved = templates.resolve_metric(metric, templates.values_of(run.spec.args) | values)
        if isinstance(resolved, templates.TemplateError):
            return metric, {}, resolved.describe()
        return resolved, values, None

    def _status(self, held: _Run) -> AnalysisRunStatus:
        return held.run.status or AnalysisRunStatus()

    def _state(self, held: _Run) -> RunState:
        status = self._status(held)
        return RunState(name=held.run.metadata.name, phase=RunPhase(status.phase.value), message=status.message or "")


def _source_metric(metric: Metric) -> Metric:
    """What a judge metric's counting provider is asked: the metric with its ``source``'s own plugin block.

    ``{"headway.dev/judge": {"source": "proxy", "proxy": {"window": "60s"}}}`` asks the proxy provider with
    ``plugin: {proxy: {window: 60s}}``; any other metric is asked as it is."""
    raw = (metric.provider.plugin or {}).get(ladder.JUDGE_PLUGIN)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("source"), str):
        return metric
    source = raw["source"]
    wire = metric.wire()
    wire["provider"] = {"plugin": {source: raw.get(source) or {}}}
    return Metric.model_validate(wire)


def judge_bad_events(metric: Metric) -> str:
    """Which proxy counter a judge metric counts as bad (``badEvents``: errors, the default, or slow)."""
    raw = (metric.provider.plugin or {}).get(ladder.JUDGE_PLUGIN) or {}
    chosen = raw.get("badEvents", "errors") if isinstance(raw, Mapping) else "errors"
    return chosen if isinstance(chosen, str) else repr(chosen)


def _judging() -> Any:
    """`headway.core.judge`, imported when a judge metric is first measured (None if this build lacks it)."""
    try:
        return importlib.import_module("headway.core.judge")
    except ImportError:
        return None


def judge_config(metric: Metric) -> Any:
    """The judge's ``JudgeConfig`` from ``provider.plugin["headway.dev/judge"]`` (camelCase keys), or why not."""
    raw = (metric.provider.plugin or {}).get(ladder.JUDGE_PLUGIN) or {}
    if not isinstance(raw, Mapping):
        return f"provider.plugin[{ladder.JUDGE_PLUGIN!r}] must be a mapping"
    names = {
        "alpha": "alpha",
        "margin": "margin",
        "toleratedRatio": "tolerated_ratio",
        "minCanaryRequests": "min_canary_requests",
    }
    settings: dict[str, Any] = {}
    for wire, attribute in names.items():
        if wire in raw:
            settings[attribute] = raw[wire]
    judging = _judging()
    if judging is None:
        return JUDGE_MISSING
    try:
        return judging.JudgeConfig(**settings)
    except (TypeError, ValueError) as error:
        return f"provider.plugin[{ladder.JUDGE_PLUGIN!r}]: {error}"


def _error(message: str, now: datetime, started: str | None) -> Measurement:
    stamp = ladder.iso(now)
    return Measurement(phase=AnalysisPhase.ERROR, message=message, started_at=started or stamp, finished_at=stamp)


def _masked(result: ProviderResult, secrets: Any) -> ProviderResult:
    if result.error is None:
        return result
    message = result.error
    for secret in secrets:
        if secret:
            message = message.replace(secret, "*****")
    return ProviderResult(value=result.value, error=message, pending=result.pending, metadata=result.metadata)


def _key(rollout: Rollout) -> str:
    return f"{rollout.metadata.namespace}/{rollout.metadata.name}"
