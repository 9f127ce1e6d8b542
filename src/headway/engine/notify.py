"""Notifications: rollout events delivered to webhooks (generic JSON or Slack-compatible), never in the way.

A pass of the engine produces events (``RolloutUpdated``, ``RolloutStepCompleted``, ``RolloutPaused``,
``RolloutAborted``, ``RolloutCompleted``, analysis failures…). A runtime hands them to `Notifier.notify`, which only
turns them into `Notification` values and puts them on a bounded queue: it never awaits, never raises, and when the
queue is full it drops (and counts) rather than slowing the rollout down. A background task delivers each
notification to the sinks subscribed to its reason, with a timeout per attempt and retries with exponential
backoff; failures are logged and counted, because a chat outage must never hold or fail a rollout.

Config is a small pydantic model so a bad file is refused up front with the field named
(``sinks[1].url: …``), not at the first delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from headway.core.decision import Event
from headway.engine.reconcile import PassResult
from headway.manifest_files import ManifestFileError, load_config_file
from headway.spec.load import SpecError
from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus

log = logging.getLogger(__name__)

DEFAULT_REASONS = (
    "RolloutUpdated",
    "RolloutStepCompleted",
    "RolloutPaused",
    "RolloutAborted",
    "RolloutCompleted",
    "AnalysisRunFailed",
    "AnalysisRunError",
    "ProgressDeadlineExceeded",
)
"""What a subscription without ``reasons`` listens to: the moments a person wants to hear about."""

DELIVERIES = Counter(
    "headway_notifications_total",
    "Notification deliveries by sink and outcome (delivered, failed, dropped, retried)",
    ["sink", "outcome"],
)


class NotifyConfigError(ValueError):
    """The notification config is invalid; the message names each bad field."""


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    """POST the JSON payload of `webhook_payload`."""
    SLACK = "slack"
    """POST ``{"text": …, "blocks": […]}`` (Slack incoming webhooks, Mattermost, Rocket.Chat)."""


class Sink(BaseModel):
    """Where notifications go and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: SinkKind = SinkKind.WEBHOOK
    url: str
    headers: dict[str, str] = {}
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=20)
    """Attempts after the first one."""
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    """Wait before the first retry; doubled each time, capped by ``backoff_max_seconds``."""
    backoff_max_seconds: float = Field(default=30.0, ge=0, le=600)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class Subscription(BaseModel):
    """Events whose reason is in ``reasons`` (``*``: all) go to every sink named in ``sinks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reasons: list[str] = list(DEFAULT_REASONS)
    sinks: list[str] = Field(min_length=1)

    def matches(self, reason: str) -> bool:
        return "*" in self.reasons or reason in self.reasons


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sinks: list[Sink] = []
    subscriptions: list[Subscription] = []
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _known_sinks(self) -> NotifyConfig:
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique, repeated: {', '.join(duplicates)}")
        for index, subscription in enumerate(self.subscriptions):
            unknown = [name for name in subscription.sinks if name not in names]
            if unknown:
                raise ValueError(
                    f"subscriptions[{index}].sinks: unknown sink {', '.join(unknown)} (known: {', '.join(names)})"
                )
        return self

    @classmethod
    def parse(cls, data: Any) -> NotifyConfig:
        """The config from decoded YAML/JSON; `NotifyConfigError` naming every bad field otherwise."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            lines = []
            for problem in error.errors():
                path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in problem["loc"]).replace(".[", "[")
                lines.append(f"{path or 'config'}: {problem['msg']}")
            raise NotifyConfigError("invalid notification config:\n  " + "\n  ".join(lines)) from None

    @classmethod
    def load(cls, path: str | Path) -> NotifyConfig:
        """The config from a YAML (or JSON) file; `NotifyConfigError` naming the file and the bad fields."""
        try:
            data = load_config_file(path)
        except ManifestFileError as error:
            raise NotifyConfigError(f"{path}: cannot read: {str(error).removeprefix(f'{path}: ')}") from None
        except SpecError as error:  # a syntax error, or a limit of the one YAML loader hit
            message = error.problems[0].message
            prefix = "not YAML: " if message.startswith("invalid YAML") else ""
            raise NotifyConfigError(f"{path}: {prefix}{message}") from None
        try:
            return cls.parse(data if data is not None else {})
        except NotifyConfigError as error:
            raise NotifyConfigError(f"{path}: {error}") from None

    def sinks_for(self, reason: str) -> list[Sink]:
        wanted = {name for s in self.subscriptions if s.matches(reason) for name in s.sinks}
        return [sink for sink in self.sinks if sink.name in wanted]


@dataclass(frozen=True)
class Notification:
    """One event of one rollout, with the state a reader needs to understand it without opening a dashboard."""

    rollout: str
    namespace: str
    reason: str
    type: str
    message: str
    phase: str | None
    step: int | None
    steps: int | None
    canary_weight: int
    stable_weight: int
    revision: str | None
    time: datetime

    @classmethod
    def of(cls, rollout: Rollout, status: RolloutStatus, event: Event, *, now: datetime) -> Notification:
        canary = rollout.spec.strategy.canary
        weights = status.canary.weights
        return cls(
            rollout=rollout.metadata.name,
            namespace=rollout.metadata.namespace,
            reason=event.reason,
            type=event.type.value,
            message=event.message,
            phase=status.phase.value if status.phase is not None else None,
            step=status.current_step_index,
            steps=len(canary.steps) if canary is not None else None,
            canary_weight=weights.canary.weight if weights is not None else 0,
            stable_weight=weights.stable.weight if weights is not None else 100,
            revision=status.current_pod_hash,
            time=now,
        )


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The generic webhook body: flat, stable keys, ISO-8601 time."""
    return {
        "rollout": n.rollout,
        "namespace": n.namespace,
        "event": {"reason": n.reason, "type": n.type, "message": n.message},
        "phase": n.phase,
        "step": n.step,
        "steps": n.steps,
        "weights": {"canary": n.canary_weight, "stable": n.stable_weight},
        "revision": n.revision,
        "time": n.time.isoformat(),
    }


_ICONS = {"RolloutCompleted": ":white_check_mark:", "RolloutAborted": ":x:", "RolloutPaused": ":double_vertical_bar:"}


def slack_payload(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for notifications and old clients, ``blocks`` for the message."""
    icon = _ICONS.get(n.reason, ":warning:" if n.type == "Warning" else ":information_source:")
    title = f"{icon} *{n.namespace}/{n.rollout}*: {n.reason}"
    step = f"{n.step}/{n.steps}" if n.step is not None and n.steps is not None else "-"
    facts = [
        f"*Phase*\n{n.phase or '-'}",
        f"*Step*\n{step}",
        f"*Weight*\ncanary {n.canary_weight}% / stable {n.stable_weight}%",
        f"*Revision*\n{n.revision or '-'}",
    ]
    return {
        "text": f"{n.namespace}/{n.rollout}: {n.reason}: {n.message}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{n.message}"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": fact} for fact in facts]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": n.time.isoformat()}]},
        ],
    }


def payload(sink: Sink, notification: Notification) -> dict[str, Any]:
    return slack_payload(notification) if sink.kind == SinkKind.SLACK else webhook_payload(notification)


@dataclass
class NotifyStats:
    """Counts since start, per process (the Prometheus counter has the same numbers by sink)."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    """The last few failure messages, newest last (for `headway` status output and tests)."""

    def error(self, message: str) -> None:
        self.errors = [*self.errors[-19:], message]


class Notifier:
    """Delivers notifications in the background; `notify` is the engine-facing, never-blocking entry point.

    Use ``async with Notifier(config) as notifier`` (or `start`/`close`) inside a running event loop.
    """

    def __init__(self, config: NotifyConfig, *, workers: int = 2) -> None:
        self.config = config
        self.stats = NotifyStats()
        self._queue: asyncio.Queue[tuple[Sink, Notification]] = asyncio.Queue(maxsize=config.queue_size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._tasks:
            return
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._work(), name=f"headway-notify-{i}") for i in range(self._workers)]

    async def close(self, *, drain_seconds: float = 0.0) -> None:
        """Stop the workers, first waiting up to ``drain_seconds`` for the queue to empty."""
        if drain_seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_seconds)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - the caller's time budget for this one call
        """Wait until every queued notification was delivered or given up on; False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    def notify(self, rollout: Rollout, status: RolloutStatus, events: Iterable[Event], *, now: datetime) -> int:
        """Queue the events of one pass for their subscribed sinks; returns how many deliveries were queued."""
        queued = 0
        for event in events:
            notification = Notification.of(rollout, status, event, now=now)
            for sink in self.config.sinks_for(event.reason):
                queued += self.enqueue(sink, notification)
        return queued

    def notify_pass(self, rollout: Rollout, result: PassResult, *, now: datetime) -> int:
        """What a runtime calls after each `headway.engine.reconcile.run_pass`: the pass's events (the shell's
        warnings included) with the status as decided."""
        outcome = result.outcome()
        return self.notify(rollout, outcome.status, outcome.events, now=now)

    def enqueue(self, sink: Sink, notification: Notification) -> bool:
        """Queue one delivery without waiting; a full queue drops it (counted and logged) instead of blocking."""
        try:
            self._queue.put_nowait((sink, notification))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            DELIVERIES.labels(sink.name, "dropped").inc()
            log.warning(
                "notification queue full (%d): dropped %s for %s", self._queue.maxsize, notification.reason, sink.name
            )
            return False
        self.stats.enqueued += 1
        return True

    async def _work(self) -> None:
        while True:
            sink, notification = await self._queue.get()
            try:
                await self._deliver(sink, notification)
            except Exception:  # a bug here must not kill the worker; it is still only a notification
                log.exception("notification to %s crashed", sink.name)
            finally:
                self._queue.task_done()

    async def _deliver(self, sink: Sink, notification: Notification) -> None:
        body = payload(sink, notification)
        delay = sink.backoff_seconds
        for attempt in range(sink.retries + 1):
            problem = await self._post(sink, body)
            if problem is None:
                self.stats.delivered += 1
                DELIVERIES.labels(sink.name, "delivered").inc()
                return
            if attempt == sink.retries:
                message = f"{sink.name}: {notification.reason} not delivered after {attempt + 1} attempts: {problem}"
                self.stats.failed += 1
                self.stats.error(message)
                DELIVERIES.labels(sink.name, "failed").inc()
                log.warning("%s", message)
                return
            self.stats.retried += 1
            DELIVERIES.labels(sink.name, "retried").inc()
            log.info("notification to %s failed (%s); retrying in %.1f s", sink.name, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, sink.backoff_max_seconds)

    async def _post(self, sink: Sink, body: Mapping[str, Any]) -> str | None:
        """One attempt; None when the receiver answered 2xx, else what went wrong."""
        assert self._session is not None, "Notifier.start() was not called"  # noqa: S101 - an invariant for the type checker, not a check of input
        timeout = aiohttp.ClientTimeout(total=sink.timeout_seconds)
        try:
            async with self._session.post(sink.url, json=body, headers=sink.headers, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer within {sink.timeout_seconds:g} s"
        except aiohttp.ClientError as error:
            return f"{type(error).__name__}: {error}"
