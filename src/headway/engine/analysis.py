"""The in-process analysis executor: AnalysisRuns measured by metric providers, judged by the pure core.

It implements `headway.engine.runs.RunBackend` for the embedded mode and the simulator (the Kubernetes runtime
keeps AnalysisRun objects in the API server instead, driven by the same core functions). Starting a run resolves
the Rollout's templates (`headway.core.templates`) into an AnalysisRun held as plain data, so a store can save it;
`observe` reads phases only, never measures; the caller's timer calls `tick(now)`, which measures the metrics that
are due, concurrently, through the providers it was given, and feeds every result through `headway.core.analysis`.

Fail closed, one run at a time. A failed query is data: any exception while measuring (resolving secrets,
calling the provider, evaluating the conditions, judging) or a timeout becomes a measurement in phase Error with
its message, so Argo's ``consecutiveErrorLimit`` decides when the metric, and so the run, is Error. A run that
cannot start (its templates cannot be resolved, its spec is invalid, a metric's provider is unknown or cannot be
built) is Error at once with the reason; so is a run the ladder itself cannot evaluate. Nothing escapes `tick`:
one run's crash never stops another run from being measured, and an Error run aborts its rollout.

Secret arguments (``valueFrom.secretKeyRef``) are read through the injected resolver at measurement time,
substituted into that measurement's metric only, and their values are masked in measurement messages: they are
never written into the run.

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
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from headway.core import analysis as ladder
from headway.core import conditions, judge, templates
from headway.core.actions import StartAnalysisRun, StartExperiment
from headway.core.observation import RunState
from headway.engine.runs import RunStates
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.spec import names
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
from headway.spec.rollout import POD_TEMPLATE_HASH_LABEL, Rollout, rollout_key
from headway.spec.status import RunPhase

log = logging.getLogger(__name__)

OWNER_ANNOTATION = "headway.dev/rollout"
EXPERIMENTS_UNSUPPORTED = "experiments are not supported by the in-process analysis executor"
DEFAULT_MEASURE_TIMEOUT = 60.0
TURN_WAIT = 1.0
"""Seconds a runtime's turn waits for the measurements it started (`advance`) before going on without them: a
provider that hangs until its timeout delays its own run, never the other rollouts' passes."""
MAX_ERROR_CHARS = 400
"""Longest exception text kept in a message: enough to recognise it, never a whole dump in a status."""

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
        # Checked again here, whatever the caller validated: a name or key holding ``..`` or ``/`` would read a
        # file outside the directory of secrets (the spec refuses them too).
        problem = names.subdomain_problem(name) or names.key_problem(key)
        if problem is not None:
            raise LookupError(f"secret {name!r} key {key!r} is not a valid Secret name and key: {problem}")
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
        key = rollout_key(rollout)
        try:
            resolved = templates.resolve_analysis(
                run.analysis,
                rollout,
                templates=self.templates,
                cluster_templates=self.cluster_templates,
                stable_hash=run.stable_hash,
                latest_hash=run.hash,
            )
        except Exception as error:  # a stored template that no longer parses, a resolver bug: the run is Error
            log.exception("resolving the templates of analysis run %s failed", run.name)
            resolved = templates.TemplateError("templates", f"could not be resolved: {describe_exception(error)}")
        extra = run.analysis.analysis_run_metadata
        metadata = ObjectMeta(
            name=run.name,
            namespace=rollout.metadata.namespace,
            labels={
                **(extra.labels if extra else {}),
                POD_TEMPLATE_HASH_LABEL: run.hash,
                "headway.dev/kind": run.kind.value,
            },
            annotations={**(extra.annotations if extra else {}), OWNER_ANNOTATION: key},
        )
        if isinstance(resolved, templates.TemplateError):
            spec = AnalysisRunSpec(metrics=[])
            status = AnalysisRunStatus(phase=AnalysisPhase.ERROR, message=f"{resolved.describe()}")
        else:
            spec, status = resolved, AnalysisRunStatus()
            problem = self.start_problem(spec)
            if problem is not None:
                status = AnalysisRunStatus(phase=AnalysisPhase.ERROR, message=problem)
        model = AnalysisRun(api_version="argoproj.io/v1alpha1", metadata=metadata, spec=spec, status=status)
        self.runs[run.name] = _Run(model, key)

    def start_problem(self, spec: AnalysisRunSpec) -> str | None:
        """Why a run of ``spec`` cannot start (None: it can): an invalid spec, or a metric whose provider is
        unknown or cannot be built. Such a run is Error at once, never a Pending run nobody measures.

        Dry-run metrics are left to their measurements (an Error there decides nothing, as in Argo)."""
        try:
            invalid = ladder.validate_run(spec)
        except Exception as error:  # the checks themselves crashed (a condition the evaluator chokes on)  # noqa: BLE001 - fail closed: any failure becomes an error result
            where = _crashing_condition(spec) or "the metrics"
            return f"Analysis spec invalid: {where} could not be checked: {describe_exception(error)}"
        if invalid is not None:
            return f"Analysis spec invalid: {invalid}"
        dry = ladder.dry_run_metrics(spec)
        for index, metric in enumerate(spec.metrics):
            if metric.name in dry:
                continue
            try:
                self._provider(metric)
            except LookupError as error:
                return f"metrics[{index}]: {str(error).strip(chr(39) + chr(34))}"
        return None

    def terminate_analysis(self, rollout: Rollout, name: str) -> None:
        held = self.runs.get(name)
        if held is None or self._status(held).phase.completed:
            return
        held.run = held.run.model_copy(update={"spec": ladder.terminate(held.run.spec)})

    def start_experiment(self, rollout: Rollout, experiment: StartExperiment) -> None:
        if experiment.name not in self.experiments:
            state = RunState(name=experiment.name, phase=RunPhase.ERROR, message=EXPERIMENTS_UNSUPPORTED)
            self.experiments[experiment.name] = (rollout_key(rollout), state)

    def terminate_experiment(self, rollout: Rollout, name: str) -> None:
        """Experiments never run here, so there is nothing to stop."""

    def observe(self, rollout: Rollout) -> tuple[RunStates, RunStates]:
        key = rollout_key(rollout)
        # Copies first (atomic in CPython): the embedded daemon reads runs while its worker thread starts new ones.
        analysis = {name: self._state(held) for name, held in list(self.runs.items()) if held.rollout == key}
        experiments = {name: state for name, (owner, state) in list(self.experiments.items()) if owner == key}
        return analysis, experiments

    # --- measuring --------------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> datetime | None:
        """Measure every due metric of every run, assess them, and return when something is next due.

        Runs advance independently: one that raises is made Error (`_advance_one`), the others carry on."""
        await asyncio.gather(*(self._advance_one(held, now) for held in list(self.runs.values())))
        return self.next_due()

    async def advance(self, name: str, now: datetime) -> None:
        """Measure what is due of run ``name`` and assess it (`tick` for one run); never raises.

        For runtimes that measure each run in its own task, so that one slow run does not hold the others."""
        held = self.runs.get(name)
        if held is not None:
            await self._advance_one(held, now)

    def next_due(self) -> datetime | None:
        """The earliest time any unfinished run needs `tick` again."""
        times: list[datetime] = []
        for held in list(self.runs.values()):
            try:
                when = ladder.next_measurement_time(held.run.spec, self._status(held))
            except Exception:  # `tick` has made such a run Error already; it must not hide the others' times
                log.exception("analysis run %s: when to measure next could not be worked out", held.run.metadata.name)
                continue
            if when is not None:
                times.append(when)
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

    def load_unreadable(self, name: str, data: Mapping[str, Any], problem: str) -> AnalysisRun:
        """Hold a saved run that no longer parses as an Error run of its owner (read from the raw annotation), so
        the rollout waiting on it aborts with ``problem`` instead of waiting forever or passing without it."""
        raw = data.get("metadata") if isinstance(data, Mapping) else None
        meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        annotations = meta.get("annotations")
        owner = annotations.get(OWNER_ANNOTATION) if isinstance(annotations, Mapping) else None
        namespace = meta.get("namespace")
        run = AnalysisRun(
            api_version="argoproj.io/v1alpha1",
            metadata=ObjectMeta(
                name=name,
                namespace=namespace if isinstance(namespace, str) and namespace else "default",
                annotations={OWNER_ANNOTATION: owner} if isinstance(owner, str) else {},
            ),
            spec=AnalysisRunSpec(metrics=[]),
            status=AnalysisRunStatus(phase=AnalysisPhase.ERROR, message=" ".join(problem.split())[:MAX_ERROR_CHARS]),
        )
        self.load(run)
        return run

    async def _advance_one(self, held: _Run, now: datetime) -> None:
        """`_advance`, fail closed: a run the ladder cannot evaluate is Error with the reason, at once.

        Measurement failures never get here (`_measure` turns them into Error measurements); what does is a run
        whose spec or status the pure ladder raises on, which no later tick would fix."""
        try:
            await self._advance(held, now)
        except Exception as error:
            name = held.run.metadata.name
            log.exception("analysis run %s could not be evaluated; it is Error", name)
            message = f"the analysis could not be evaluated: {describe_exception(error)}"
            held.run = held.run.model_copy(update={"status": _errored(self._status(held), message, now)})

    async def _advance(self, held: _Run, now: datetime) -> None:
        spec, status = held.run.spec, self._status(held)
        if status.phase.completed:
            return
        if status.started_at is None:
            problem = self.start_problem(spec)
            if problem is not None:  # a run created elsewhere (the Kubernetes runtime) is checked on its first tick
                held.run = held.run.model_copy(update={"status": _errored(status, problem, now)})
                return
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
        """One measurement of ``task``; never raises: whatever goes wrong is an Error measurement saying where.

        Secret values are masked in every message, the crash messages included."""
        started = task.pending.started_at if task.pending is not None else None
        secrets: dict[str, str] = {}
        stage = "resolving the metric's arguments"
        try:
            metric, secrets, problem = self._resolve_secrets(run, task.metric)
            if problem is not None:
                return _error(problem, now, started), None
            stage = "finding the metric's provider"
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
            handle = task.handle
            if task.cancel and handle is not None:
                stage = "cancelling the measurement"
                await self._guard(lambda: provider.cancel(metric, handle), answer=False)
                return Measurement(
                    phase=AnalysisPhase.SUCCESSFUL,
                    message=ladder.TERMINATED,
                    started_at=started,
                    finished_at=ladder.iso(now),
                ), None
            stage = "calling the provider"
            asked = _source_metric(metric)
            if handle:
                result = await self._guard(lambda: provider.poll(asked, handle, context))
            else:
                result = await self._guard(lambda: provider.start(asked, context))
            result = _masked(result, secrets.values())
            if ladder.is_judge(metric) and result.error is None and result.pending is None:
                stage = "judging the window"
                return self._judge(metric, result, status, now, started)
            stage = "evaluating the conditions"
            return ladder.measure(metric, result, now, started_at=started), None
        except Exception as error:  # fail closed: a crash is an Error measurement, counted like any other
            name = run.metadata.name
            log.warning("analysis run %s, metric %s: %s failed", name, task.metric.name, stage, exc_info=True)
            message = _mask_text(f"{stage} failed: {describe_exception(error)}", secrets.values())
            return _error(message, now, started), None

    def _judge(
        self, metric: Metric, result: ProviderResult, status: AnalysisRunStatus, now: datetime, started: str | None
    ) -> tuple[Measurement, tuple[int, int, int, int] | None]:
        window = ladder.parse_window(result.value, bad=judge_bad_events(metric))
        if isinstance(window, str):
            return _error(window, now, started), None
        config = ladder.judge_config(metric)
        if isinstance(config, str):
            return _error(config, now, started), None
        history = [*ladder.windows(status.result(metric.name)), window]
        outcome = judge.judge([judge.Window(*counts) for counts in history], config)
        return ladder.judge_measurement(window, outcome, now, started_at=started), window

    async def _guard(self, call: Callable[[], Awaitable[object]], *, answer: bool = True) -> ProviderResult:
        """A provider call bounded in time; a crash, a timeout or a reply that is not a result becomes an error
        result, not an exception (``answer=False``: the reply is not looked at, as for ``cancel``)."""
        try:
            result = await asyncio.wait_for(call(), timeout=self.measure_timeout)
        except TimeoutError:
            return ProviderResult(error=f"the provider did not answer within {self.measure_timeout:g}s")
        except Exception as error:  # a provider bug must not stop the other runs' measurements  # noqa: BLE001 - fail closed: any failure becomes an error result
            return ProviderResult(error=f"the provider failed: {describe_exception(error)}")
        if isinstance(result, ProviderResult):
            return result
        if not answer:
            return ProviderResult()
        return ProviderResult(error=f"the provider answered {type(result).__name__}, not a measurement result")

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
        try:
            provider = self.providers.get(kind)
        except Exception as error:  # a provider whose construction fails (bad configuration, missing library)  # noqa: BLE001 - fail closed: any failure becomes an error result
            raise LookupError(
                f"metric {metric.name!r}: the metric provider for type {kind!r} could not be built: "
                f"{describe_exception(error)}"
            ) from None
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
            assert arg.value_from is not None  # noqa: S101 - an invariant for the type checker, not a check of input
            ref = arg.value_from.secret_key_ref
            if ref is None:
                return metric, {}, f"args.{arg.name}: valueFrom.fieldRef is only resolved from a Rollout"
            if self.secrets is None:
                return metric, {}, f"args.{arg.name}: no secret resolver is configured"
            try:
                values[arg.name] = self.secrets(run.metadata.namespace, ref.name, ref.key)
            except LookupError as error:
                return metric, {}, f"args.{arg.name}: {str(error).strip(chr(39) + chr(34))}"
            except Exception as error:  # a resolver that crashed: no value, and nothing of it in the message  # noqa: BLE001 - fail closed: any failure becomes an error result
                return metric, {}, f"args.{arg.name}: reading the secret failed: {type(error).__name__}"
        try:
            resolved = templates.resolve_metric(metric, templates.values_of(run.spec.args) | values)
        except Exception as error:  # noqa: BLE001 - fail closed: any failure becomes an error result
            text = _mask_text(describe_exception(error), values.values())
            return metric, {}, f"resolving the secret arguments failed: {text}"
        if isinstance(resolved, templates.TemplateError):
            return metric, {}, _mask_text(resolved.describe(), values.values())
        return resolved, values, None

    def _status(self, held: _Run) -> AnalysisRunStatus:
        return held.run.status or AnalysisRunStatus()

    def _state(self, held: _Run) -> RunState:
        status = self._status(held)
        try:
            gap = ladder.evidence_gap(held.run.spec, status)
        except Exception as error:  # fail closed: a run whose measurements cannot be read proves nothing  # noqa: BLE001 - fail closed: any failure becomes an error result
            gap = f"its measurements cannot be read: {describe_exception(error)}"
        return RunState(
            name=held.run.metadata.name,
            phase=RunPhase(status.phase.value),
            message=status.message or "",
            evidence_gap=gap,
        )


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


def describe_exception(error: BaseException) -> str:
    """An exception as one bounded line of status text: its type and message, lone surrogates escaped (a
    condition holding ``'\\ud800'`` raises with it in the message, and UTF-8 writers choke on it)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _crashing_condition(spec: AnalysisRunSpec) -> str | None:
    """The first ``metrics[i].successCondition``/``failureCondition`` whose compilation raises (not merely fails),
    to name the field when checking a run crashed; None when no condition does."""
    for index, metric in enumerate(spec.metrics):
        for field_name, text in (
            ("successCondition", metric.success_condition),
            ("failureCondition", metric.failure_condition),
        ):
            if text is None:
                continue
            try:
                conditions.compile_condition(text)
            except Exception:  # noqa: BLE001 - fail closed: any failure becomes an error result
                return f"metrics[{index}].{field_name}"
    return None


def _errored(status: AnalysisRunStatus, message: str, now: datetime) -> AnalysisRunStatus:
    """The run ends in Error with ``message`` (what it measured so far is kept)."""
    stamp = ladder.iso(now)
    return status.model_copy(
        update={
            "phase": AnalysisPhase.ERROR,
            "message": message,
            "started_at": status.started_at or stamp,
            "completed_at": stamp,
        }
    )


def _error(message: str, now: datetime, started: str | None) -> Measurement:
    stamp = ladder.iso(now)
    return Measurement(phase=AnalysisPhase.ERROR, message=message, started_at=started or stamp, finished_at=stamp)


def _masked(result: ProviderResult, secrets: Any) -> ProviderResult:
    if result.error is None:
        return result
    message = _mask_text(result.error, secrets)
    return ProviderResult(value=result.value, error=message, pending=result.pending, metadata=result.metadata)


def _mask_text(message: str, secrets: Any) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "*****")
    return message
