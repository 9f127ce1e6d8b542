"""Embedded mode's analysis: runs measured in the controlling process over the templates applied to it.

The executor itself is the engine's (`headway.engine.analysis`); what is embedded here is where templates and
runs live (documents in SQLite, read live so templates applied after startup are found), the ``proxy`` provider
aimed at the proxy of the rollout that owns the run, and the runner hook that measures and persists runs. Which
providers the mode runs is the mode registry's choice (`headway.engine.modes`), handed in by the wiring
(`headway.bootstrap.embedded`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import ClassVar, TypeVar

from headway.engine import admission
from headway.engine.analysis import TURN_WAIT, AnalysisExecutor, EnvironmentSecrets
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.proxy import ProxyProvider
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.embedded.runner import Hook, put
from headway.spec.analysis import (
    AnalysisRun,
    AnalysisRunSpec,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    Metric,
)
from headway.stores.sqlite import SqliteStore

log = logging.getLogger(__name__)
TemplateT = TypeVar("TemplateT", AnalysisTemplate, ClusterAnalysisTemplate)

ANALYSIS_RUN = "AnalysisRun"


class StoredTemplates(Mapping[str, TemplateT]):
    """A live, read-only view of the applied templates of one kind, keyed ``namespace/name`` (or by bare name).

    Live because templates applied after startup must be found by the next run; parsed on each lookup, which
    happens only when a run starts.
    """

    def __init__(self, store: SqliteStore, kind: str, model: type[TemplateT]) -> None:
        self.store = store
        self.kind = kind
        self.model: type[TemplateT] = model

    def __getitem__(self, key: str) -> TemplateT:
        data, _ = self.store.get_document(self.kind, key)
        if data is None and "/" not in key:
            data = next((doc for k, doc, _ in self.store.list_documents(self.kind) if k.endswith("/" + key)), None)
        if data is None:
            raise KeyError(key)
        model: TemplateT = self.model.model_validate(data)
        return model

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, _, _ in self.store.list_documents(self.kind)])

    def __len__(self) -> int:
        return len(self.store.list_documents(self.kind))


class RolloutProxyProvider:
    """The ``proxy`` metric provider aimed at the proxy of the rollout that owns the run being measured.

    Proxies listen on ports chosen at start, so a manifest cannot name the admin address; the run's owner
    (recorded by the executor) tells which proxy to ask. An explicit ``address`` in the metric still wins.
    """

    type: ClassVar[str] = ProxyProvider.type

    def __init__(self, proxies: Proxies, owner: Callable[[str], str | None]) -> None:
        self.proxies = proxies
        self.owner = owner

    def _provider(self, context: MeasureContext) -> ProxyProvider:
        key = self.owner(context.run_name)
        proxy = self.proxies.get(key) if key is not None else None
        address = proxy.admin_url if proxy is not None else None
        return ProxyProvider(default_address=address, token=self.proxies.token)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        return await self._provider(context).start(metric, context)

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        return await self._provider(context).poll(metric, pending, context)

    async def cancel(self, metric: Metric, pending: str) -> None:
        """The proxy provider finishes in start: nothing to cancel."""


class EmbeddedExecutor(AnalysisExecutor):
    """The executor, refusing at start a run this mode cannot measure: its templates were applied before the
    mode checked them at apply (`headway.engine.admission`), so the run is Error at once with the reason,
    instead of erring measurement after measurement until the error limit."""

    def start_problem(self, spec: AnalysisRunSpec) -> str | None:
        problem = super().start_problem(spec)
        if problem is None:  # every provider is one this executor can build (tests register their own)
            return None
        return admission.run_problem(spec, admission.Mode.EMBEDDED) or problem  # the mode's reason reads better

    def owner(self, run_name: str) -> str | None:
        """The rollout (``namespace/name``) that started run ``run_name``, while the run is held."""
        held = self.runs.get(run_name)
        return held.rollout if held is not None else None


def build_analysis(
    store: SqliteStore, state_dir: Path, providers: Mapping[str, MetricProvider]
) -> tuple[EmbeddedExecutor, Hook]:
    """The in-process analysis executor over the applied templates, and the hook that measures and persists runs.

    Runs are saved as documents after every tick that changed them and loaded back at start, so a controller
    killed mid-analysis resumes the same run with the measurements it had. Each run is measured in its own task
    and saved on its own: one that hangs (until its provider's timeout), crashes or cannot be saved never keeps
    the others (another rollout's verdict) from being measured and saved, nor the runner's turn waiting longer
    than `TURN_WAIT`; a saved run that no longer reads back is held as an Error run (its rollout aborts) instead
    of stopping startup.
    """
    executor = EmbeddedExecutor(
        templates=StoredTemplates(store, "AnalysisTemplate", AnalysisTemplate),
        cluster_templates=StoredTemplates(store, "ClusterAnalysisTemplate", ClusterAnalysisTemplate),
        providers=providers,
        secrets=EnvironmentSecrets(directory=state_dir / "secrets"),
    )
    saved: dict[str, AnalysisRun] = {}
    for key, data, _ in store.list_documents(ANALYSIS_RUN):
        try:
            run = AnalysisRun.model_validate(data)
        except ValueError as error:
            log.error("%s: saved analysis run %s is not readable; holding it as Error: %s", store.path, key, error)
            run = executor.load_unreadable(key, data, f"the saved run is not readable: {error}")
        else:
            executor.load(run)
        saved[key] = run  # an unreadable one is not written back: its document stays as it was, for a human

    measuring: dict[str, asyncio.Task[None]] = {}

    async def tick(now: datetime) -> None:
        started: list[asyncio.Task[None]] = []
        for name in list(executor.runs):
            run = executor.run(name)
            task = measuring.get(name)
            finished = run is not None and run.status is not None and run.status.phase.completed
            if not finished and (task is None or task.done()):
                measuring[name] = asyncio.create_task(executor.advance(name, now), name=f"analysis run {name}")
                started.append(measuring[name])
        if started:
            # what this turn started, briefly; a run still measuring after that is saved in a later turn
            await asyncio.wait(started, timeout=TURN_WAIT)
        for name, task in list(measuring.items()):
            if task.done():
                del measuring[name]
                if not task.cancelled() and task.exception() is not None:  # `advance` never raises; just in case
                    log.error("measuring analysis run %s failed", name, exc_info=task.exception())
        for name in list(executor.runs):
            try:
                run = executor.run(name)
                if run is not None and saved.get(name) != run:
                    put(store, ANALYSIS_RUN, name, run.model_dump(by_alias=True, mode="json", exclude_none=True))
                    saved[name] = run
            except Exception:  # this run is saved again next turn; the others are saved now
                log.exception("saving analysis run %s failed", name)

    return executor, tick
