"""The embedded runtime's loop: reconcile each rollout when its timer is due or when something changed.

`headway.engine.reconcile` owns no timers; this module keeps the clock for one machine. Per rollout it remembers
when the engine asked to look again (``requeue_after``) and wakes earlier when told that something changed: a
user command, a replica that became ready (the platform's callback), an analysis run that moved. A periodic
resync bounds how long a missed notification can delay a pass, like an informer's resync in Kubernetes.

Rollout specs live in a document store (SQLite in production), not in memory, because ``pause``, ``undo`` and
``set image`` change the spec and must survive a ``kill -9`` of this process just like the status does. The
pod template of every revision is remembered there as well, so ``undo --to-revision N`` can find it again.

Passes, hooks and commands run on the runner's worker (`headway.runtimes.embedded.worker`): one thread with its
own event loop, so a pass blocked on a proxy never freezes the loop that serves the API and the event stream, and
a user command and a pass never interleave inside a pass. The loop that calls `run` (the "home" loop) only awaits
the worker; the runner's bookkeeping (schedule, events, weight history) is guarded by a lock, and what wakes a
waiter on the home loop is handed to it with ``call_soon_threadsafe``. The status store still checks versions,
which is what makes a command written between a pass's read and its write win.

A rollout with no saved status whose revisions are already serving (the database was lost or replaced while the
processes kept running) is not a first deploy: `Runner.adopt_serving` records the serving revision as stable
first, so the template rolls out through its steps instead of replacing what runs at full weight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from headway.core import commands
from headway.core.decision import Event, EventType
from headway.core.hashing import pod_template_hash
from headway.core.observation import RevisionState
from headway.engine.admission import Mode, admit_all
from headway.engine.reconcile import Engine, PassResult
from headway.manifest_files import load_manifest_text
from headway.runtimes.embedded.worker import Worker
from headway.spec.load import Document, SpecError, parse
from headway.spec.rollout import Rollout, rollout_key
from headway.spec.status import RolloutStatus
from headway.spec.validate import validate
from headway.stores.base import NO_VERSION, ConflictError

log = logging.getLogger(__name__)

ROLLOUT = "Rollout"
REVISION = "RevisionTemplate"
"""Document kind under which the pod template of each revision number is kept, for ``undo``."""
DEFAULT_RESYNC = 5.0
EVENT_HISTORY = 500
"""Events kept in memory for the API's event stream and ``get``; older ones are dropped."""
WEIGHT_HISTORY = 240
"""Weight points kept per rollout for the dashboard's chart: a change is kept, and a steady weight once per
`WEIGHT_EVERY` seconds, so the ring spans a whole rollout of minutes without growing."""
WEIGHT_EVERY = 5.0

Clock = Callable[[], datetime]


class SteadyClock:
    """The embedded daemon's clock: the wall time read once, at start, then advanced by a monotonic clock.

    Pauses, analysis intervals and deadlines are durations. Read from the wall clock, a step of it (NTP correcting
    a drifted clock, someone setting the date) would end a one-hour pause at once (forward) or stall every
    measurement for as long as it went back. Anchored once, the runner's time moves exactly as much as real time
    passes, and timestamps stay wall times. A restart re-anchors: times saved before it are compared with the
    wall time of the new start, which is the best anyone can do across a restart.
    """

    def __init__(
        self, wall: Callable[[], datetime] | None = None, monotonic: Callable[[], float] | None = None
    ) -> None:
        # CLOCK_BOOTTIME counts a suspend (a laptop's sleep), CLOCK_MONOTONIC does not: after a night asleep the
        # runner would be hours behind, and a metric query at its time would read data from before the canary.
        monotonic = monotonic or _boot_time
        self._monotonic = monotonic
        self._anchor = (wall or (lambda: datetime.now(UTC)))()
        self._started = monotonic()

    def __call__(self) -> datetime:
        return self._anchor + timedelta(seconds=self._monotonic() - self._started)


def _boot_time() -> float:
    """Seconds since boot, suspends included (Linux); the monotonic clock where the system has no such clock."""
    boot = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boot) if boot is not None else time.monotonic()


Hook = Callable[[datetime], Awaitable[None]]
"""Called once per loop turn with the current time: the analysis executor's tick, the proxy backend sync."""


class Documents(Protocol):
    """Durable, versioned JSON documents by (kind, key): the documents table of `headway.stores.sqlite`."""

    def get_document(self, kind: str, key: str) -> tuple[dict[str, Any] | None, str]:
        """The document and its version; ``(None, NO_VERSION)`` when there is none; reads only."""
        ...

    def put_document(self, kind: str, key: str, body: Mapping[str, Any], expected_version: str) -> str:
        """Store ``body`` if the version is still ``expected_version``; the new version, else ConflictError."""
        ...

    def list_documents(self, kind: str) -> list[tuple[str, dict[str, Any], str]]:
        """Every document of ``kind`` as ``(key, body, version)``, by key."""
        ...


class MemoryDocuments:
    """`Documents` in a dict: for tests, and for runs that need not survive a restart."""

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}

    def get_document(self, kind: str, key: str) -> tuple[dict[str, Any] | None, str]:
        entry = self._documents.get((kind, key))
        return (None, NO_VERSION) if entry is None else (dict(entry[0]), str(entry[1]))

    def put_document(self, kind: str, key: str, body: Mapping[str, Any], expected_version: str) -> str:
        entry = self._documents.get((kind, key))
        actual = NO_VERSION if entry is None else str(entry[1])
        if actual != expected_version:
            raise ConflictError(f"{kind}:{key}", expected_version, actual)
        version = 1 if entry is None else entry[1] + 1
        self._documents[(kind, key)] = (dict(body), version)
        return str(version)

    def list_documents(self, kind: str) -> list[tuple[str, dict[str, Any], str]]:
        return [(key, dict(doc), str(v)) for (k, key), (doc, v) in sorted(self._documents.items()) if k == kind]


def put(documents: Documents, kind: str, key: str, body: Mapping[str, Any]) -> None:
    """Create or replace a document. Last writer wins: only this process writes specs, on one event loop.

    ``metadata.generation`` is kept as an API server keeps it (1 on create, +1 when ``spec`` changes), so the
    engine's ``observedGeneration`` tells the CLI whether a status already describes the newest spec.
    """
    old, version = documents.get_document(kind, key)
    generation = 1
    if old is not None:
        previous = int((old.get("metadata") or {}).get("generation") or 1)
        generation = previous if old.get("spec") == body.get("spec") else previous + 1
    metadata = {**(body.get("metadata") or {}), "generation": generation}
    documents.put_document(kind, key, {**body, "metadata": metadata}, version)


class CommandError(ValueError):
    """A command that cannot be carried out as asked (unknown rollout, bad argument, control not applicable)."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status the daemon answers with (404 unknown, 400 invalid, 409 not applicable now)."""


@dataclass(frozen=True)
class RecordedEvent:
    """An engine or user event with when and for which rollout it happened; ``seq`` orders the stream."""

    seq: int
    at: datetime
    rollout: str
    type: str
    reason: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "rollout": self.rollout,
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class _Schedule:
    due: datetime | None = None
    woken: bool = True


@dataclass
class Runner:
    """Reconciles every rollout in the document store through ``engine``, honouring requeue times and wake-ups."""

    engine: Engine
    documents: Documents
    hooks: Sequence[Hook] = ()
    after: Sequence[Hook] = ()
    """Called after the passes of a turn: pushes what a pass changed (a blue/green switch) without waiting a turn."""
    clock: Clock = field(default=lambda: datetime.now(UTC))
    resync: float = DEFAULT_RESYNC
    on_pass: Callable[[str, PassResult], None] | None = None
    """Called after each pass (the demo and tests watch decisions through it)."""
    notify: Callable[[Rollout, PassResult, datetime], object] | None = None
    """Called after each pass with the rollout it was about: `headway.engine.notify.Notifier.notify_pass`."""
    serving: Callable[[Rollout], str | None] | None = None
    """The revision the data plane routes as stable, when it keeps that itself (the embedded proxy's state
    file): what `adopt_serving` takes as stable when it is among the serving revisions."""

    def __post_init__(self) -> None:
        self._schedule: dict[str, _Schedule] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._seq = 0
        self.events: deque[RecordedEvent] = deque(maxlen=EVENT_HISTORY)
        self.weights: dict[str, deque[tuple[datetime, int]]] = {}
        """Per rollout key: (when, canary weight set) after passes, oldest first (see `WEIGHT_HISTORY`); read it
        through `weight_history` from another thread."""
        self._changed = asyncio.Event()
        self._books = threading.Lock()
        """Guards the schedule, the events, the weight history and the sequence: never held across a call out."""
        self._home: asyncio.AbstractEventLoop | None = None
        self._home_thread: int | None = None
        self.worker = Worker()
        self._with_status: set[str] = set()
        """Rollouts known to have a saved status (`adopt_serving` has nothing to do for them)."""
        self._unreadable: set[str] = set()
        """Stored rollouts that no longer parse, already reported (once, not on every turn)."""
        self._failing: dict[str, str] = {}
        """Per rollout, the error its passes fail with, already reported (again only once it changes or clears)."""

    # --- rollouts and their specs ---------------------------------------------------------------------------

    def rollouts(self) -> dict[str, Rollout]:
        """Every stored rollout by ``namespace/name``; a stored document that no longer parses is skipped loudly."""
        found: dict[str, Rollout] = {}
        for key, data, _ in self.documents.list_documents(ROLLOUT):
            try:
                model = parse(dict(data), file=f"state:{key}")
            except SpecError as error:  # not reconciled: said on the rollout, not only in the log
                log.error("stored rollout %s is invalid, not reconciling it: %s", key, error)
                if key not in self._unreadable:
                    self._unreadable.add(key)
                    self.record(key, "Warning", "InvalidSpec", f"the stored rollout no longer parses: {error}")
                continue
            self._unreadable.discard(key)
            if isinstance(model, Rollout):
                found[key] = model
        return found

    def rollout(self, name: str) -> Rollout:
        """A rollout by ``name`` or ``namespace/name``; CommandError(404) when there is none."""
        key = name if "/" in name else f"default/{name}"
        data, _ = self.documents.get_document(ROLLOUT, key)
        if data is None:
            raise CommandError(f"rollout {name!r} not found", status=404)
        model = parse(dict(data), file=f"state:{key}")
        assert isinstance(model, Rollout)  # noqa: S101 - an invariant for the type checker, not a check of input
        return model

    def status(self, rollout: Rollout) -> RolloutStatus:
        return self.engine.store.load(rollout_key(rollout))[0]

    def apply_text(self, text: str, file: str = "<request>", *, only_new: bool = False) -> list[str]:
        """Store every manifest of a YAML text (all-or-nothing: any error stores none); returns ``Kind/name``.

        ``only_new`` stores only objects not stored yet: ``headway up`` after a crash must resume the rollout in
        progress, not re-apply the original file over a ``set image`` (which would roll it back).
        """
        return self.apply_documents(load_manifest_text(text, file), file, only_new=only_new)

    def apply_documents(self, documents: Sequence[Document], file: str, *, only_new: bool = False) -> list[str]:
        """`apply_text` for documents already loaded (several files checked together, as a Git commit is)."""
        problems = [problem for doc in documents for problem in doc.problems] + validate(documents)
        problems += admit_all(documents, Mode.EMBEDDED)  # what this mode cannot do is refused, not half-done
        errors = [problem for problem in problems if problem.is_error]
        if errors:
            raise SpecError(errors)
        models = [doc for doc in documents if doc.model is not None]
        if not models:
            raise CommandError(f"{file}: no Headway manifest found", status=400)
        return [self._store(doc) for doc in models if not (only_new and self._exists(doc))]

    async def apply(self, text: str, file: str = "<request>", *, only_new: bool = False) -> list[str]:
        """`apply_text` on the worker, after the pass or command in progress: what the daemon calls."""
        self._attach()
        return await self.worker.call(self.apply_text, text, file, only_new=only_new)

    async def apply_loaded(self, documents: Sequence[Document], file: str) -> list[str]:
        """`apply_documents` on the worker: what the Git sync calls for a commit it has checked."""
        self._attach()
        return await self.worker.call(self.apply_documents, documents, file)

    def _exists(self, document: Document) -> bool:
        model = document.model
        assert model is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        key = f"{model.metadata.namespace}/{model.metadata.name}"
        return self.documents.get_document(model.kind, key)[0] is not None

    def _store(self, document: Document) -> str:
        model = document.model
        assert model is not None and document.data is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        key = f"{model.metadata.namespace}/{model.metadata.name}"
        put(self.documents, model.kind, key, document.data)
        if isinstance(model, Rollout):
            self.wake(key)
        self.record(key, "Normal", "Applied", f"{model.kind}/{model.metadata.name} applied")
        return f"{model.kind}/{model.metadata.name}"

    def save_rollout(self, rollout: Rollout) -> None:
        key = rollout_key(rollout)
        put(self.documents, ROLLOUT, key, rollout.wire())
        self.wake(key)

    def revision_templates(self, rollout: Rollout) -> dict[int, Mapping[str, Any]]:
        """The pod template of each revision number seen so far."""
        prefix = rollout_key(rollout) + "#"
        return {
            int(key.removeprefix(prefix)): doc["template"]
            for key, doc, _ in self.documents.list_documents(REVISION)
            if key.startswith(prefix)
        }

    # --- user commands --------------------------------------------------------------------------------------

    async def act(self, name: str, verb: str, **options: Any) -> RolloutStatus:
        """`command` on the worker, serialised with the passes, then a pass of that rollout: what the daemon and
        the dashboard call. The pass makes the answer (and the caller's next read) show what the command led to,
        as when commands and passes shared one loop: ``promote --full`` then ``status`` must not see the pause."""
        self._attach()

        def command_then_pass() -> RolloutStatus:
            self.command(name, verb, **options)
            rollout = self.rollout(name)
            self._reconcile(rollout_key(rollout), rollout)
            return self.status(rollout)

        return await self.worker.call(command_then_pass)

    def command(self, name: str, verb: str, **options: Any) -> RolloutStatus:
        """Carry out one user control on rollout ``name``; ControlError/CommandError explain a refusal."""
        rollout = self.rollout(name)
        key = rollout_key(rollout)
        try:
            self._command(rollout, verb, options)
        except commands.ControlError as error:
            raise CommandError(str(error)) from error
        reason = "User" + "".join(part.title() for part in verb.split("-"))
        self.record(key, "Normal", reason, _describe(verb, options))
        self.wake(key)
        return self.status(rollout)

    def _command(self, rollout: Rollout, verb: str, options: Mapping[str, Any]) -> None:
        key = rollout_key(rollout)
        match verb:
            case "promote":
                changed: list[Rollout] = []

                def promote(status: RolloutStatus) -> RolloutStatus:
                    new_rollout, new_status = commands.promote(rollout, status, full=bool(options.get("full")))
                    changed[:] = [new_rollout]
                    return new_status

                self.engine.update_status(key, promote)
                if changed and changed[0] is not rollout:
                    self.save_rollout(changed[0])
            case "abort":
                self.engine.update_status(key, commands.abort)
            case "retry":
                self.engine.update_status(key, commands.retry)
            case "pause":
                self.save_rollout(commands.pause(rollout))
            case "resume":
                self.save_rollout(commands.resume(rollout))
            case "restart":
                self.save_rollout(commands.restart(rollout, self.clock()))
            case "undo":
                self.save_rollout(commands.undo(rollout, self._undo_template(rollout, options.get("to_revision"))))
            case "set-image":
                self.save_rollout(_with_image(rollout, str(options["container"]), str(options["image"])))
            case _:
                raise CommandError(f"unknown command {verb!r}", status=400)

    def _undo_template(self, rollout: Rollout, to_revision: object) -> Mapping[str, Any]:
        templates = self.revision_templates(rollout)
        current = pod_template_hash(rollout.spec.template)
        if to_revision is not None:
            if not isinstance(to_revision, int) or to_revision not in templates:
                known = ", ".join(str(n) for n in sorted(templates)) or "none"
                raise CommandError(f"to-revision: no revision {to_revision} (known: {known})", status=400)
            return templates[to_revision]
        older = [n for n, t in sorted(templates.items()) if pod_template_hash(t) != current]
        if not older:
            raise CommandError("nothing to undo: no earlier revision is known", status=409)
        return templates[older[-1]]

    # --- the loop -------------------------------------------------------------------------------------------

    def wake(self, key: str | None = None) -> None:
        """Reconcile ``key`` (every rollout when None) at the next loop turn. Safe to call from any thread."""
        with self._books:
            if key is None:
                for schedule in self._schedule.values():
                    schedule.woken = True
            else:
                self._schedule.setdefault(key, _Schedule()).woken = True
        self._at_home(self._wakeup.set)

    def stop(self) -> None:
        self._stopping = True
        self._at_home(self._wakeup.set)

    def close(self) -> None:
        """Stop the worker thread (after `run` returned); the runner can no longer turn."""
        self.worker.close()

    async def run(self) -> None:
        """Loop until `stop`: hooks, then every rollout that is due or woken, then sleep until the next due time."""
        self._attach()
        failed = ""
        while not self._stopping:
            self._wakeup.clear()
            try:
                await self.turn()
                delay = self._delay()
                failed = ""
            except Exception as error:  # the store could not be listed (or a bug): the loop lives on
                log.exception("a runner turn failed; the next one is in %.1f s", self.resync)
                message = f"a runner turn failed (retried in {self.resync:g} s): {type(error).__name__}: {error}"
                if message != failed:  # on the daemon-wide stream ("" key), once per distinct error
                    self.record("", "Warning", "ReconcileError", message)
                failed, delay = message, self.resync
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def turn(self) -> None:
        """One loop turn on the worker: the hooks, every rollout that is due, then the after-hooks. The calling
        loop only awaits it. Tests call it directly."""
        self._attach()
        await self.worker.run(self._turn)

    async def _turn(self) -> None:
        await self._run_hooks(self.hooks)
        now = self.clock()
        reconciled = False
        for key, rollout in self.rollouts().items():
            with self._books:
                schedule = self._schedule.setdefault(key, _Schedule())
                due = schedule.woken or schedule.due is None or schedule.due <= now
            if due:
                self._reconcile(key, rollout)
                reconciled = True
        if reconciled:
            await self._run_hooks(self.after)

    def _attach(self) -> None:
        """Remember the calling loop as home: where waiters (`wait_for_change`, `run`'s sleep) are woken."""
        if self._home is None:
            self._home = asyncio.get_running_loop()
            self._home_thread = threading.get_ident()

    def _at_home(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` on the home loop: now when already there (or before any loop), else handed over."""
        home = self._home
        if home is None or threading.get_ident() == self._home_thread:
            fn()
            return
        with contextlib.suppress(RuntimeError):  # the home loop is closed: no one is waiting any more
            home.call_soon_threadsafe(fn)

    async def _run_hooks(self, hooks: Sequence[Hook]) -> None:
        for hook in hooks:
            try:
                await hook(self.clock())
            except Exception:  # a broken hook must not stop the loop that reconciles everything else
                log.exception("runner hook %r failed", hook)

    def _reconcile(self, key: str, rollout: Rollout) -> None:
        now = self.clock()
        with self._books:
            schedule = self._schedule[key]
            schedule.woken = False
        try:
            self.adopt_serving(key, rollout)
            result = self.engine.run_pass(rollout, now=now, key=key)
            self._after_pass(key, rollout, result, now, schedule)
        except Exception as error:  # an adapter bug: report it, retry at the resync, keep the others going
            log.exception("reconciling %s failed", key)
            message = f"{type(error).__name__}: {error}"
            if self._failing.get(key) != message:  # once per distinct error, not every resync: events are bounded
                self._failing[key] = message
                self.record(key, "Warning", "ReconcileError", message)
            with self._books:
                schedule.due = _after(now, self.resync)

    def _after_pass(self, key: str, rollout: Rollout, result: PassResult, now: datetime, schedule: _Schedule) -> None:
        """Events, revision and weight history, the next due time and the callbacks of a pass that ran."""
        self._failing.pop(key, None)
        outcome = result.outcome()
        for event in outcome.events:
            self._record_event(key, event)
        if result.saved_version is not None and not outcome.events:
            self._touch()  # a status change without an event (a replica became ready) is news for watchers too
        self._remember_revision(rollout, outcome.status)
        self._remember_weight(key, now, outcome.status)
        requeue = outcome.requeue_after
        with self._books:
            schedule.due = _after(now, min(requeue, self.resync) if requeue is not None else self.resync)
            if requeue is not None and requeue <= 0:
                schedule.woken = True
        if requeue is not None and requeue <= 0:
            self._at_home(self._wakeup.set)
        if self.notify is not None:
            self._at_home(lambda: self._notify(rollout, result, now))
        if self.on_pass is not None:
            on_pass = self.on_pass
            self._at_home(lambda: on_pass(key, result))

    def _notify(self, rollout: Rollout, result: PassResult, now: datetime) -> None:
        """On the home loop: the notifier queues on it (an asyncio queue is not thread-safe)."""
        try:
            if self.notify is not None:
                self.notify(rollout, result, now)
        except Exception:  # notifications must never stop a rollout
            log.exception("notifying about %s failed", rollout_key(rollout))

    def adopt_serving(self, key: str, rollout: Rollout) -> RevisionState | None:
        """Before the first pass of a rollout with no saved status: when revisions of it are already serving,
        record the one serving as stable (the revision that is returned) instead of letting the core take the
        template as a first deploy, which goes to full weight at once, without steps.

        That happens when the database was lost, emptied or replaced while the replicas kept running (`headway up
        --adopt`), or when a manifest is applied over processes a forgotten instance left behind. The serving
        revision is the one the data plane routes as stable (`serving`) when it says; else the one with the most
        ready replicas, the newer on a tie (a promoted revision whose predecessor waits out its scale-down delay).
        If it is the template's own revision, the rollout is simply steady."""
        if key in self._with_status:  # once a rollout has a status it keeps one: no read on every pass
            return None
        if self.engine.store.load(key)[1] != NO_VERSION:
            self._with_status.add(key)
            return None
        serving = [r for r in self.engine.platform.revisions(rollout).values() if r.ready > 0]
        if not serving:
            return None
        routed = self.serving(rollout) if self.serving is not None else None
        chosen = [r for r in serving if r.hash == routed]
        stable = chosen[0] if chosen else max(serving, key=lambda r: (r.ready, r.number))
        canary = rollout.spec.strategy.canary
        steps = len(canary.steps) if canary is not None else None
        message = (
            f"no saved status, but revision {stable.number} ({stable.hash}) is serving with {stable.ready} ready "
            "replicas: adopted as stable, so a new template rolls out through its steps"
        )
        status = RolloutStatus(stable_rs=stable.hash, current_pod_hash=stable.hash, current_step_index=steps)
        try:
            self.engine.store.save(key, status, NO_VERSION)
        except ConflictError:  # someone saved a status meanwhile: theirs stands
            return None
        self.record(key, str(EventType.NORMAL), "RolloutAdopted", message)
        return stable

    def _remember_revision(self, rollout: Rollout, status: RolloutStatus) -> None:
        if rollout.spec.template is None or status.current_pod_hash != pod_template_hash(rollout.spec.template):
            return
        revisions = self.engine.platform.revisions(rollout)
        revision = revisions.get(status.current_pod_hash)
        if revision is None:
            return
        doc_key = f"{rollout_key(rollout)}#{revision.number}"
        if self.documents.get_document(REVISION, doc_key)[0] is None:
            put(self.documents, REVISION, doc_key, {"hash": revision.hash, "template": rollout.spec.template})

    def _remember_weight(self, key: str, now: datetime, status: RolloutStatus) -> None:
        weights = status.canary.weights
        weight = weights.canary.weight if weights is not None else 0
        with self._books:
            ring = self.weights.setdefault(key, deque(maxlen=WEIGHT_HISTORY))
            if not ring or ring[-1][1] != weight or (now - ring[-1][0]).total_seconds() >= WEIGHT_EVERY:
                ring.append((now, weight))

    def weight_history(self, key: str) -> list[tuple[datetime, int]]:
        """A copy of the weight history of rollout ``key``, safe to read while a pass adds to it."""
        with self._books:
            return list(self.weights.get(key, ()))

    def _delay(self) -> float:
        now = self.clock()
        with self._books:
            dues = [s.due for s in self._schedule.values() if s.due is not None]
            woken = any(s.woken for s in self._schedule.values())
        if woken:
            return 0.0
        if not dues:
            return self.resync
        return max(0.0, min(self.resync, (min(dues) - now).total_seconds()))

    # --- events and change notification ---------------------------------------------------------------------

    def record(self, key: str, type_: str, reason: str, message: str) -> RecordedEvent:
        at = self.clock()
        with self._books:
            self._seq += 1
            event = RecordedEvent(self._seq, at, key, type_, reason, message)
            self.events.append(event)
        self._at_home(self._signal)  # wake every watcher now
        log.info("%s %s: %s", key, reason, message)
        return event

    def _touch(self) -> None:
        with self._books:
            self._seq += 1
        self._at_home(self._signal)

    def _signal(self) -> None:
        """On the home loop: wake everyone in `wait_for_change`; they re-check `sequence`."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _record_event(self, key: str, event: Event) -> None:
        self.record(key, str(event.type), event.reason, event.message)

    @property
    def sequence(self) -> int:
        """The number of the last change (an event, or a status saved without one); watchers wait for it to move."""
        return self._seq

    def events_after(self, seq: int, rollout: str | None = None) -> list[RecordedEvent]:
        with self._books:
            return [e for e in self.events if e.seq > seq and (rollout is None or e.rollout == rollout)]

    async def wait_for_change(self, after: int, timeout: float) -> int:  # noqa: ASYNC109 - the caller's time budget for this one call
        """Return when `sequence` passes ``after`` or after ``timeout`` seconds; the current sequence."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._seq <= after and (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
        return self._seq


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=max(0.0, seconds))


def _with_image(rollout: Rollout, container: str, image: str) -> Rollout:
    """The rollout with ``image`` on container ``container``; CommandError naming the known containers."""
    template = dict(rollout.spec.template or {})
    spec = dict(template.get("spec") or {})
    containers = [dict(c) for c in spec.get("containers") or []]
    names = [str(c.get("name", "")) for c in containers]
    if container not in names:
        raise CommandError(
            f"container {container!r} not found in rollout {rollout.name} (containers: {', '.join(names) or 'none'})",
            status=400,
        )
    if not image:
        raise CommandError("image: must not be empty", status=400)
    containers[names.index(container)]["image"] = image
    spec["containers"] = containers
    template["spec"] = spec
    return rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"template": template})})


def _describe(verb: str, options: Mapping[str, Any]) -> str:
    details = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if v not in (None, False))
    return f"{verb} requested" + (f" ({details})" if details else "")
