"""The Kubernetes controller: kopf watches wake one worker per Rollout, which runs the shared engine's pass.

Level-based, as kopf's own docs advise: watch events (on the Rollout, its ReplicaSets, its AnalysisRuns) only
record the newest Rollout body and wake that Rollout's worker; the worker runs one pass at a time per key, from
what it then reads, and sleeps until the next wake or the engine's ``requeue_after``.

Memory per Rollout is what scales (1,000 Rollouts: bench/controller.py). Between passes a Rollout costs its
worker (a task and an event) and its newest body, kept packed (compressed JSON, about a tenth of the dict it
decodes to); the dict, the parsed model and the engine of a pass are dropped when the pass ends. kopf keeps a
worker per watched object that holds the object's last event while it idles: a short idle timeout lets those
go soon after a burst. Nothing is stored in
kopf's progress annotations (only event handlers are registered), so the controller's writes are the engine's.

Passes run in a worker thread (the ports are synchronous); their API calls come back to this event loop through
`BlockingKube`, so one HTTP connection pool serves all. A pass that fails is logged, counted and retried after a
delay; an invalid Rollout gets an ``InvalidSpec`` condition and a Warning Event, and waits for the next edit.
Only the Lease holder runs passes (`LeaderElector`); followers keep watching so they can take over warm.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kopf
import yaml
from aiohttp import web

from headway.core import readiness
from headway.core.decision import Event, EventType
from headway.core.errors import AdapterError, PermanentError, TemporaryError
from headway.engine.gates import HttpGates
from headway.engine.notify import Notifier, NotifyConfig
from headway.engine.reconcile import PassResult
from headway.kube.client import (
    DEFAULT_GROUP,
    EVENTS,
    BlockingKube,
    KubeClient,
    KubeconfigError,
    rollouts,
)
from headway.platforms.kubernetes import ROLLOUT_LABEL, KubernetesPlatform
from headway.runtimes.kubernetes.analysis import RunMeasurer, cluster_providers, history_limits, uses_analysis
from headway.runtimes.kubernetes.cache import CachedKube, ReplicaSetCache, newer
from headway.runtimes.kubernetes.engines import EngineFactory, admit
from headway.runtimes.kubernetes.experiments import ExperimentRunner
from headway.runtimes.kubernetes.leader import LeaderElector
from headway.runtimes.kubernetes.metrics import ControllerMetrics
from headway.runtimes.kubernetes.packed import pack, unpack
from headway.runtimes.kubernetes.runs import has_experiments
from headway.spec.rollout import Rollout
from headway.spec.status import Condition, Phase, RolloutStatus
from headway.stores.base import ConflictError
from headway.stores.k8s_status import KubernetesStatusStore, label_selector

log = logging.getLogger(__name__)

INVALID_SPEC = "InvalidSpec"
RETRY_AFTER_ERROR = 30.0
LATENCIES_KEPT = 100_000
OWNED_SETTLE_SECONDS = 0.25
"""How long a pass woken only by owned objects (ReplicaSets, AnalysisRuns) waits for the rest of their burst."""
NOTIFY_DRAIN_SECONDS = 5.0
"""How long a stopping controller waits for notifications still queued (the last pass's, often the verdict)."""
SHUTDOWN_SECONDS = 10.0
"""How long a stopping controller waits for passes still running in their threads."""
T = TypeVar("T")
KOPF_IDLE_SECONDS = 1.0
"""How long kopf keeps an object's idle worker, and with it the object's last event (kopf's default: 5 s)."""


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ControllerConfig:
    """How one controller process runs."""

    api_group: str = DEFAULT_GROUP
    namespace: str | None = None
    """Watch one namespace; None: the whole cluster."""
    server: str | None = None
    """An API server URL to use without credentials (tests); None: in-cluster account or kubeconfig."""
    kubeconfig: Path | None = None
    """A kubeconfig file (its current context, or ``context``); None: in-cluster account, else $KUBECONFIG."""
    context: str | None = None
    identity: str = field(default_factory=default_identity)
    leader_election: bool = True
    lease_name: str | None = None
    """None: `lease_name_for` the API group, so controllers of both groups in one namespace never contend."""
    lease_namespace: str = "default"
    lease_seconds: float = 15.0
    metrics_port: int | None = None
    """Serve /metrics and /healthz on ``metrics_host``:<port>; None: do not serve."""
    metrics_host: str = "127.0.0.1"
    """Loopback unless told otherwise: in a pod, the probes and a scraping Service need ``0.0.0.0``."""
    workers: int = 16
    """Rollouts reconciled at the same time."""
    notify: NotifyConfig | None = None
    """Where to deliver the Rollouts' events (webhooks, Slack), as embedded mode's ``--notify``; None: nowhere."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """What "now" is for passes, analysis and experiments (time is an input: tests move it forward)."""


def lease_name_for(group: str) -> str:
    """``headway-controller`` for our own group (as before), ``headway-controller-<group>`` for another one."""
    return "headway-controller" if group == DEFAULT_GROUP else f"headway-controller-{group.replace('.', '-')}"


@dataclass(slots=True)
class _Worker:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    body: bytes | None = None
    """The newest body, `pack`ed."""
    task: asyncio.Task[None] | None = None
    urgent: bool = True
    """The next pass is for the Rollout itself (first sight, an edit, its own requeue time): no settling."""
    held: list[str] | None = None
    """While a pass runs: the resourceVersions of the Rollout events that arrived meanwhile (not yet woken)."""
    failure: str | None = None
    """The unexpected error the last pass ended in, already reported on the Rollout (once, not every retry)."""


def key_of(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


class Controller:
    """Reconciles Rollouts of one API group; `run` until `stop` is set."""

    def __init__(
        self,
        config: ControllerConfig,
        client: KubeClient | None = None,
        *,
        engines: EngineFactory,
        gates: Callable[[], HttpGates] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.engines = engines
        """Builds each pass's engine (the composition root's, `headway.bootstrap.kubernetes.engine_for`)."""
        self.client = client or _client_for(config)
        self.metrics = ControllerMetrics()
        self.registry = kopf.OperatorRegistry()
        self.workers: dict[str, _Worker] = {}
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
        """Seconds per pass, in order, the newest `LATENCIES_KEPT` (the benchmark reads them)."""
        self.leader = LeaderElector(
            self.client,
            name=config.lease_name or lease_name_for(config.api_group),
            namespace=config.lease_namespace,
            identity=config.identity,
            lease_seconds=config.lease_seconds,
            renew_seconds=max(config.lease_seconds / 3, 0.2),
        )
        self._kube: BlockingKube | None = None
        self._executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="pass")
        """Passes block on API calls (the ports are synchronous); a pool of their own keeps them from queueing
        behind other blocking work, and bounds how many Rollouts are reconciled at once."""
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._slots = asyncio.Semaphore(config.workers)
        """Passes under way, at most one per pool thread: a Rollout waiting for its turn holds only its packed
        body, not the unpacked dict, model and engine (1,000 Rollouts changed at once would hold them all)."""
        self.measurer = RunMeasurer(
            self.client,
            config.api_group,
            cluster_providers(self.client, config.api_group),
            on_finished=self.metrics.run_finished,
        )
        """Measures AnalysisRuns; the ``job`` provider runs batch/v1 Jobs in the cluster."""
        self._own_writes: dict[str, str] = {}
        """The resourceVersion of each Rollout's status as this controller last wrote it."""
        self.replica_sets = ReplicaSetCache()
        """Each Rollout's ReplicaSets from the watch and our writes: a pass lists them without a request."""
        self._fresh: dict[str, dict[str, Any]] = {}
        """The Rollout as the server returned it from a pass's status write, until the worker keeps it: the next
        pass reads the Rollout from the worker's body (not a GET), which must not be older than our own write."""
        self._workload_refs: dict[str, str] = {}
        """Rollout key → the Deployment (``namespace/name``) a workloadRef Rollout takes its template from."""
        self._new_gates = gates
        self.notifier = notifier
        """Delivers each pass's events to the configured webhooks (``headway controller --notify``), off the pass."""
        self.gates = gates() if gates is not None else None
        """Calls ``spec.webhooks`` gates off the pass (their answers are read by a later pass), as embedded does;
        None where the mode's registry lists no gate backend (admission then refuses webhooks)."""
        self._register()

    # --- kopf wiring ---------------------------------------------------------------------------------------------

    def _register(self) -> None:
        group, registry = self.config.api_group, self.registry

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.posting.enabled = False  # our Events are the engine's, not kopf's handler logs
            settings.watching.server_timeout = 300
            settings.networking.request_timeout = 60
            settings.queueing.idle_timeout = KOPF_IDLE_SECONDS

        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            if self.config.server:
                return kopf.ConnectionInfo(server=self.config.server, insecure=True)
            if self.config.kubeconfig is not None:
                return kopf_login(self.config.kubeconfig, self.config.context)
            return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

        @kopf.on.event(group, "v1alpha1", "rollouts", registry=registry)
        async def rollout_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
            key = key_of(body)
            meta = body.get("metadata") or {}
            worker = self.workers.get(key)
            if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
                await self.forget(key)
            elif worker is not None and worker.held is not None:
                # A pass is running: this may be the echo of the status it is writing, which can arrive before
                # the pass knows its version. Decided when the pass ends (`_release`).
                worker.body = pack(body)
                worker.held.append(str(meta.get("resourceVersion")))
            elif meta.get("resourceVersion") == self._own_writes.get(key):
                self.remember(key, pack(body))  # the echo of our own status write: nothing new to decide on
            else:
                self.wake(key, pack(body))

        async def owned_changed(body: kopf.Body, **_: Any) -> None:
            labels = body.get("metadata", {}).get("labels") or {}
            self.wake(f"{body.get('metadata', {}).get('namespace')}/{labels.get(ROLLOUT_LABEL)}")

        @kopf.on.event("apps", "v1", "replicasets", labels={ROLLOUT_LABEL: kopf.PRESENT}, registry=registry)
        async def replica_set_changed(event: Mapping[str, Any], body: kopf.Body, **kwargs: Any) -> None:
            self.replica_sets.observed(dict(body), deleted=event.get("type") == "DELETED")
            await owned_changed(body, **kwargs)

        present = {ROLLOUT_LABEL: kopf.PRESENT}
        kopf.on.event(group, "v1alpha1", "analysisruns", labels=present, registry=registry)(owned_changed)
        kopf.on.event(group, "v1alpha1", "experiments", labels=present, registry=registry)(owned_changed)

        @kopf.on.event("apps", "v1", "deployments", registry=registry)
        async def deployment_changed(body: kopf.Body, **_: Any) -> None:
            # A workloadRef Rollout's pod template lives in the Deployment: an edit there is a new revision.
            meta = body.get("metadata") or {}
            deployment = f"{meta.get('namespace')}/{meta.get('name')}"
            for key in [key for key, referenced in self._workload_refs.items() if referenced == deployment]:
                self.wake(key)

    def wake(self, key: str, body: bytes | None = None) -> None:
        """Record the newest (`pack`ed) body, if given, and wake the key's worker, starting it on first sight."""
        worker = self.workers.get(key)
        if worker is None:
            if body is None:
                return  # an owned object of a Rollout we have not seen (yet): its own event will come
            worker = self.workers[key] = _Worker()
            # A context of its own: created inside a kopf handler, the task would otherwise copy kopf's context
            # variables, which hold that event's cause and whole body for as long as the worker lives.
            worker.task = asyncio.create_task(
                self._work(key, worker), name=f"rollout {key}", context=contextvars.Context()
            )
        if body is not None:
            worker.body = body
            worker.urgent = True
        worker.wake.set()

    def remember(self, key: str, body: bytes) -> None:
        """Keep the newest body for the key's next pass without waking it."""
        worker = self.workers.get(key)
        if worker is not None:
            worker.body = body

    async def forget(self, key: str) -> None:
        worker = self.workers.pop(key, None)
        self._fresh.pop(key, None)
        self._own_writes.pop(key, None)
        self._workload_refs.pop(key, None)
        if worker is not None and worker.task is not None:
            worker.task.cancel()
        namespace, _, name = key.partition("/")
        self.replica_sets.forget(namespace, name)
        self.metrics.forget(namespace, name)

    # --- the worker ----------------------------------------------------------------------------------------------

    async def _work(self, key: str, worker: _Worker) -> None:
        while True:
            if self.config.leader_election:
                await self.leader.leading.wait()
            if not worker.urgent:
                await self._settle(key, worker)
            worker.urgent = False
            worker.wake.clear()
            delay: float | None
            worker.held = []
            try:
                async with self._slots:
                    delay = await self._pass(worker.body)
            except asyncio.CancelledError:
                raise
            except AdapterError as error:  # reading the status failed (timeout, 5xx, forbidden): try again later
                log.warning("reconciling %s: %s", key, error)
                temporary = isinstance(error, TemporaryError)
                self.metrics.errors.labels("temporary" if temporary else "permanent").inc()
                delay = error.delay if isinstance(error, TemporaryError) else RETRY_AFTER_ERROR
            except Exception as error:  # a bug must not kill the worker: log it, count it, say it, retry later
                log.exception("reconciling %s failed", key)
                self.metrics.errors.labels("exception").inc()
                delay = RETRY_AFTER_ERROR
                await self._report_failure(worker, error)
            else:
                worker.failure = None
            fresh = self._fresh.pop(key, None)
            if fresh is not None and (worker.body is None or newer(fresh, unpack(worker.body))):
                worker.body = pack(fresh)
            self._release(key, worker)
            try:
                await asyncio.wait_for(worker.wake.wait(), timeout=delay)
            except TimeoutError:
                worker.urgent = True  # the time the pass asked for has come

    async def _settle(self, key: str, worker: _Worker) -> None:
        """Only owned objects changed: the echo of our own write, the ReplicaSet controller's status update and
        pods becoming available come in a burst. Look once the Rollout's ReplicaSets have caught up with their
        specs (nothing more is due), or after `OWNED_SETTLE_SECONDS` (pods that take their time to start), or
        at once on an edit of the Rollout itself. A pass on half a burst would write a status the next one
        overwrites; a fixed wait for every burst made each step 0.25 s slower than the cluster."""
        namespace, _, name = key.partition("/")
        deadline = asyncio.get_running_loop().time() + OWNED_SETTLE_SECONDS
        while not worker.urgent and not self.replica_sets.settled(namespace, name):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            worker.wake.clear()
            try:
                await asyncio.wait_for(worker.wake.wait(), timeout=remaining)
            except TimeoutError:
                return

    async def _report_failure(self, worker: _Worker, error: Exception) -> None:
        """An unexpected exception is an error on the Rollout, not only a log line: a ``ReconcileError`` Warning
        Event naming it (once per distinct error; the pass is retried after `RETRY_AFTER_ERROR`)."""
        message = f"reconciling failed: {type(error).__name__}: {error}; retrying in {RETRY_AFTER_ERROR:g} s"
        if worker.body is None or worker.failure == message:
            return
        try:
            await self.post_event(unpack(worker.body), Event(EventType.WARNING, "ReconcileError", message))
        except Exception:  # the report must not turn one failure into two: logged, and tried again on the retry
            log.exception("reporting the failure of %s on the Rollout failed", key_of(unpack(worker.body)))
            return
        worker.failure = message

    def _release(self, key: str, worker: _Worker) -> None:
        """After a pass: wake again at once if a Rollout event held during it was not the echo of its write."""
        held, worker.held = worker.held or [], None
        own = self._own_writes.get(key)
        if any(version != own for version in held):
            worker.urgent = True
            worker.wake.set()

    async def _pass(self, packed: bytes | None) -> float | None:
        """A pass on the unpacked body; its dict, model and engine are gone when this returns."""
        return await self.reconcile(unpack(packed)) if packed is not None else None

    async def reconcile(self, body: dict[str, Any]) -> float | None:
        """One pass for one Rollout body; returns when to look again (None: on the next change)."""
        kube = CachedKube(self.kube, self.replica_sets)
        admission = admit(body)
        if admission.rollout is None:
            await self._mark_invalid(body, admission.problems)
            return None
        rollout = admission.rollout
        if rollout.spec.workload_ref is None:
            self._workload_refs.pop(key_of(body), None)
        else:
            self._workload_refs[key_of(body)] = f"{rollout.metadata.namespace}/{rollout.spec.workload_ref.name}"
            try:
                rollout = await self._blocking(KubernetesPlatform(kube).resolve_workload_ref, rollout)
            except PermanentError as error:  # not there yet (GitOps may apply it later): said, and looked at again
                await self._mark_invalid(body, (str(error),))
                return RETRY_AFTER_ERROR
        engine = self.engines(rollout, kube, self.config.api_group, self.gates, cached=body)
        if _has_condition(body, INVALID_SPEC):
            await self._blocking(engine.update_status, key_of(body), _without_invalid_spec)
        started = time.perf_counter()
        now = self.config.clock()
        experiments_after = await self._experiments(rollout, now)
        measure_after = await self._measure(rollout, now)
        result: PassResult = await self._blocking(functools.partial(engine.run_pass, rollout, now=now))
        elapsed = time.perf_counter() - started
        if result.saved_version is not None:
            self._own_writes[key_of(body)] = result.saved_version
            if isinstance(engine.store, KubernetesStatusStore) and engine.store.saved is not None:
                self._fresh[key_of(body)] = engine.store.saved
        elif result.failure is None and not result.conflict and _stale_selector(body, rollout):
            # A status written before status.selector existed (or by an older release): /scale needs it now.
            with contextlib.suppress(ConflictError):  # someone wrote meanwhile: the next save carries it
                await self._blocking(engine.update_status, key_of(body), _unchanged)
        self.latencies.append(elapsed)
        self.metrics.reconcile_seconds.observe(elapsed)
        outcome = result.outcome()
        if result.failure is not None:
            self.metrics.errors.labels("temporary" if result.failure.temporary else "permanent").inc()
        strategy = "canary" if rollout.spec.strategy.canary is not None else "blueGreen"
        self.metrics.set_phase(rollout.metadata.namespace, rollout.name, outcome.status.phase, strategy)
        for event in outcome.events:
            await self.post_event(body, event)
        if self.notifier is not None:
            try:
                self.notifier.notify_pass(rollout, result, now=now)
            except Exception:  # a notification must never fail a pass: the events are on the Rollout already
                log.exception("notifying about %s failed", key_of(body))
        log.debug("pass %s took %.3fs; requeue after %s", key_of(body), elapsed, outcome.requeue_after)
        delays = [d for d in (outcome.requeue_after, measure_after, experiments_after) if d is not None]
        return min(delays, default=None)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pass pool, tracked until it returns: its API calls need this loop to run, so a
        shutdown waits for it (see `run`) instead of leaving the thread to time out on a stopped loop."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        future.add_done_callback(_consume)  # a pass whose worker was cancelled: nobody else reads its outcome
        # Shielded: cancelling the worker (a deleted Rollout, shutdown) must not cancel this future, which would
        # drop it from `_in_flight` while its thread still runs (shutdown would not wait for it).
        return await asyncio.shield(future)

    async def _experiments(self, rollout: Rollout, now: datetime) -> float | None:
        """Advance the Rollout's Experiments before its pass (their ReplicaSets, runs and phase), so the pass sees
        their newest phases; nothing is read for a Rollout without experiment steps."""
        if not has_experiments(rollout):
            return None
        runner = ExperimentRunner(self.kube, self.config.api_group)
        return await self._blocking(runner.advance_all, rollout, now)

    async def _measure(self, rollout: Rollout, now: datetime) -> float | None:
        """Measure the Rollout's running AnalysisRuns before its pass, so the pass sees their newest phases
        (an Experiment's analyses included: they are labelled with the Rollout too)."""
        if not uses_analysis(rollout) and not has_experiments(rollout):
            return None
        try:
            return await self.measurer.measure(rollout.metadata.namespace, rollout.name, now, history_limits(rollout))
        except AdapterError as error:
            log.warning("measuring the analysis runs of %s: %s", rollout.name, error)
            return RETRY_AFTER_ERROR

    async def _mark_invalid(self, body: dict[str, Any], problems: tuple[str, ...]) -> None:
        message = "; ".join(problems)[:2000]
        store = KubernetesStatusStore(self.kube, rollouts(self.config.api_group))
        key = key_of(body)
        current, version = await self._blocking(store.load, key)
        existing = current.condition(INVALID_SPEC)
        generation = (body.get("metadata") or {}).get("generation")
        observed = str(generation) if generation is not None else current.observed_generation
        unchanged = existing is not None and existing.message == message and current.phase == Phase.DEGRADED
        if unchanged and current.observed_generation == observed:
            return
        now = self.config.clock()
        condition = Condition(
            type=INVALID_SPEC,
            status="True",
            reason=INVALID_SPEC,
            message=message,
            last_update_time=now,
            last_transition_time=existing.last_transition_time if existing else now,
        )
        others = [c for c in current.conditions if c.type != INVALID_SPEC]
        status = current.model_copy(
            update={
                "conditions": [*others, condition],
                "phase": Phase.DEGRADED,
                "message": f"InvalidSpec: {message}",
                "observed_generation": observed,  # seen (and refused): `status` must fail now, not time out
            }
        )
        # Stalled for kstatus (Flux, `kubectl wait`): an invalid spec will not progress until it is edited.
        status = readiness.with_readiness(
            status, generation=generation if isinstance(generation, int) else None, now=now
        )
        try:
            await self._blocking(store.save, key, status, version)
        except AdapterError as error:
            log.warning("could not mark %s invalid: %s", key, error)
        except ConflictError as error:  # the next event carries the newer object; anything else is the pass's error
            log.info("marking %s invalid deferred: %s", key, error)
            return
        self.metrics.errors.labels("invalid_spec").inc()
        await self.post_event(body, Event(EventType.WARNING, INVALID_SPEC, message))

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """A core/v1 Event on the Rollout; failing to post one is logged, never fatal."""
        meta = body.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = meta.get("namespace") or "default"
        event_body = {
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind", "Rollout"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": str(event.type),
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": "headway-controller"},
            "reportingComponent": "headway-controller",
            "reportingInstance": self.config.identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(EVENTS, event_body)
        except AdapterError as error:
            log.warning("posting event %s on %s failed: %s", event.reason, meta.get("name"), error)

    # --- running -------------------------------------------------------------------------------------------------

    async def _stop_workers_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for key in list(self.workers):
            await self.forget(key)

    @property
    def kube(self) -> BlockingKube:
        if self._kube is None:
            raise RuntimeError("the controller is not running")
        return self._kube

    async def run(self, *, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
        """Watch and reconcile until ``stop`` is set; then finish gracefully (workers, lease, server)."""
        self._kube = BlockingKube(self.client, asyncio.get_running_loop())
        if self._new_gates is not None:
            self.gates = self._new_gates()  # a fresh pool per run: the last run closed its own
        stop = stop or asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        runner: web.AppRunner | None = None
        if self.notifier is not None:
            await self.notifier.start()
        if self.config.leader_election:
            tasks.append(asyncio.create_task(self.leader.run(), name="lease"))
        if self.config.metrics_port is not None:
            runner = web.AppRunner(self.metrics.app())
            await runner.setup()
            await web.TCPSite(runner, self.config.metrics_host, self.config.metrics_port).start()
        # Stop our workers as soon as stop is asked: kopf otherwise waits 5 s for every task spawned during its
        # run (ours included) before cancelling them. Created before kopf starts, so kopf leaves this one alone.
        tasks.append(asyncio.create_task(self._stop_workers_on(stop), name="stop workers"))
        namespaces = [self.config.namespace] if self.config.namespace else []
        try:
            await kopf.operator(
                registry=self.registry,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces,
                stop_flag=stop,
                ready_flag=ready,
            )
        except AdapterError as error:
            # kopf has stopped (on `stop`, or on SIGTERM/SIGINT through its own signal handlers), waited for every
            # task still running and re-raised their errors: ours can only be an API call that a pass (in its
            # thread) had in flight and has already handled. Not a reason to fail the exit.
            log.info("an API call in flight at shutdown failed: %s", error)
        finally:
            for key in list(self.workers):
                await self.forget(key)
            if self._in_flight:  # passes cancelled above still run in their threads: let them finish
                await asyncio.wait(set(self._in_flight), timeout=SHUTDOWN_SECONDS)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            self._executor.shutdown(wait=False, cancel_futures=True)
            if self.gates is not None:
                self.gates.close()
            if self.notifier is not None:
                await self.notifier.close(drain_seconds=NOTIFY_DRAIN_SECONDS)


def _client_for(config: ControllerConfig) -> KubeClient:
    if config.server:
        return KubeClient.for_server(config.server)
    if config.kubeconfig is not None or config.context is not None:
        return KubeClient.from_kubeconfig(config.kubeconfig, context=config.context, field_manager="headway")
    return KubeClient.from_environment()


def kopf_login(path: Path, context: str | None) -> kopf.ConnectionInfo:
    """kopf's credentials from one kubeconfig file and context (kopf's own handler reads only $KUBECONFIG): the
    server, its CA, and a token or a client certificate, inline or as files."""
    config = yaml.safe_load(path.read_text()) or {}
    chosen = context or config.get("current-context")

    def entry(section: str, name: object) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == name:
                found: dict[str, Any] = item.get(section[:-1]) or {}
                return found
        raise KubeconfigError(f"kubeconfig {path}: no {section[:-1]} {name!r}: check --kubeconfig and --context")

    ctx = entry("contexts", chosen)
    cluster, user = entry("clusters", ctx.get("cluster")), entry("users", ctx.get("user"))
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"),
        private_key_data=user.get("client-key-data"),
        token=user.get("token"),
        default_namespace=ctx.get("namespace"),
    )


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("a pass finished after its worker stopped: %s", future.exception())


def _stale_selector(body: Mapping[str, Any], rollout: Rollout) -> bool:
    """A status exists but its ``selector`` (what /scale reports to an HPA) is not the Rollout's."""
    status = body.get("status")
    return isinstance(status, Mapping) and status.get("selector") != label_selector(rollout.spec.selector)


def _unchanged(status: RolloutStatus) -> RolloutStatus:
    return status


def _has_condition(body: Mapping[str, Any], kind: str) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind for c in conditions)


def _without_invalid_spec(status: RolloutStatus) -> RolloutStatus:
    conditions = [c for c in status.conditions if c.type != INVALID_SPEC]
    message = "" if status.message.startswith("InvalidSpec:") else status.message
    phase = None if status.phase == Phase.DEGRADED and message == "" else status.phase
    return status.model_copy(update={"conditions": conditions, "message": message, "phase": phase})
