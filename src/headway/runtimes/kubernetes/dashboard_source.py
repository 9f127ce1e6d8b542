"""The dashboard's `RolloutSource` over a cluster: what ``headway dashboard --context …`` serves.

Reads are the CLI's (`headway.runtimes.kubernetes.operate.Cluster`): a Rollout with its ReplicaSets, AnalysisRuns
(measurements, the judge's evidence) and Events, so the page and ``headway get rollout`` show one thing. Actions
are the CLI's controls too, the same JSON patches carrying the resourceVersion they were computed from; the
dashboard app checks the token before any of them reaches this module.

Live updates come from polling, not watch streams: one poller per source lists the Rollouts and AnalysisRuns in
scope every ``poll_seconds`` and tells every subscriber which rollouts changed (a Rollout's or one of its runs'
resourceVersion moved) and which Events were posted on them since. A watch would join three kinds of object and
must survive reconnects and 410s; at a second's interval two LISTs cost the server little and a ReplicaSet that
becomes ready still shows, because the controller then writes the Rollout's status. The poller runs only while
someone listens. The cluster has no memory of past weights, so the weight chart is what this source has seen.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from lightkube import ALL_NS

from headway.core.errors import AdapterError, TemporaryError
from headway.dashboard.model import (
    Action,
    ActionRefusedError,
    ActionResult,
    ChangeEvent,
    RolloutNotFoundError,
    RolloutView,
    SourceUnavailableError,
    WeightPoint,
)
from headway.kube.client import DEFAULT_GROUP, EVENTS, Body, Kind, KubeClient, analysis_runs, rollouts
from headway.platforms.kubernetes import ROLLOUT_LABEL
from headway.runtimes.kubernetes.operate import (
    Cluster,
    OperationError,
    RolloutMissingError,
    build_view,
    discover_groups,
    failure,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_SECONDS = 1.0
WEIGHT_POINTS = 500
"""Weight changes remembered per rollout for the chart."""
QUEUE_SIZE = 1000


class ClusterSource:
    """A `headway.dashboard.source.RolloutSource` over the API server; ``namespace`` None: every namespace."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str | None = None,
        group: str | None = DEFAULT_GROUP,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.group = group
        """The API group of the Rollouts; None: every group the cluster serves Rollouts in (`discover_groups`,
        once), as the CLI finds them without ``--api-group``."""
        self._served: tuple[str, ...] | None = (group,) if group else None
        self.poll_seconds = poll_seconds
        self._weights: dict[str, collections.deque[WeightPoint]] = {}
        self._subscribers: list[asyncio.Queue[ChangeEvent]] = []
        self._poller: asyncio.Task[None] | None = None
        self.rounds = 0
        """Polling rounds that read the cluster (the first one is the baseline changes are measured against)."""

    async def _groups(self) -> tuple[str, ...]:
        """The API groups shown, preferred first; a cluster serving no Rollouts is `SourceUnavailableError`."""
        if self._served is None:
            try:
                self._served = await self._read(discover_groups(self.client))
            except OperationError as error:
                raise SourceUnavailableError(str(error)) from None
        return self._served

    async def _cluster(self, namespace: str) -> Cluster:
        preferred, *others = await self._groups()
        return Cluster(self.client, namespace, group=preferred, server=self.client.server, also=tuple(others))

    async def _list(self, kind: Callable[[str], Kind]) -> list[Body]:
        """Every object of ``kind`` (``rollouts``, ``analysis_runs``) in scope, in each group shown."""
        found: list[Body] = []
        for group in await self._groups():
            found += await self.client.list(kind(group), self._scope())
        return found

    # --- RolloutSource ---------------------------------------------------------------------------------------

    async def list_rollouts(self) -> list[RolloutView]:
        items = await self._read(self._list(rollouts))
        views = [build_view(item, [], []) for item in items]
        for view in views:
            self._remember(view.key, view.canary_weight)
        return [view.summary() for view in views]

    async def get_rollout(self, name: str, namespace: str) -> RolloutView:
        self._check_scope(name, namespace)
        try:
            cluster = await self._cluster(namespace)
            view = await self._read(cluster.view(name, events=True))
        except RolloutMissingError as missing:
            raise RolloutNotFoundError(str(missing)) from None
        self._remember(view.key, view.canary_weight)
        return view.model_copy(update={"weight_history": list(self._weights.get(view.key, ()))})

    async def act(self, name: str, namespace: str, action: Action, args: Mapping[str, Any]) -> ActionResult:
        """The CLI's control for ``action``; the change is published at once (the poller would see it later)."""
        self._check_scope(name, namespace)
        cluster = await self._cluster(namespace)
        try:
            if action is Action.PROMOTE or action is Action.PROMOTE_FULL:
                view = await cluster.promote(name, full=action is Action.PROMOTE_FULL)
            elif action is Action.ABORT:
                view = await cluster.abort(name)
            elif action is Action.RETRY:
                view = await cluster.retry(name)
            else:
                view = await cluster.undo(name, _revision(args))
        except RolloutMissingError as missing:
            raise RolloutNotFoundError(str(missing)) from None
        except OperationError as refused:
            raise ActionRefusedError(str(refused)) from None
        except TemporaryError as error:
            raise SourceUnavailableError(str(failure(error, self.client.server))) from None
        except AdapterError as error:  # forbidden (RBAC), invalid: the server's reason, as a refusal
            raise ActionRefusedError(str(error)) from None
        self._remember(view.key, view.canary_weight)
        reason = "User" + action.value.title().replace("-", "")
        self._publish(ChangeEvent(rollout=view.key, reason=reason, at=datetime.now(UTC)))
        return ActionResult(ok=True, message=f"{action.value} requested for {namespace}/{name}")

    async def subscribe(self) -> AsyncIterator[ChangeEvent]:
        queue: asyncio.Queue[ChangeEvent] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subscribers.append(queue)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="headway-dashboard-poller")
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)
            if not self._subscribers and self._poller is not None:
                self._poller.cancel()
                self._poller = None

    async def close(self) -> None:
        """Stop the poller (the client is the caller's to close)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # --- polling ---------------------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Every ``poll_seconds``: publish the rollouts whose objects moved and the Events posted since last time."""
        versions: dict[str, tuple[str, ...]] | None = None
        seen_events: set[str] | None = None
        while True:
            try:
                current, weights = await self._versions()
                events = await self._events()
            except (AdapterError, SourceUnavailableError) as error:  # unreachable for a moment: the next round
                # compares with the last good one
                log.warning("dashboard poll failed: %s", error)
            else:
                now = datetime.now(UTC)
                for key, weight in weights.items():
                    self._remember(key, weight)
                if versions is not None:
                    for key in sorted(set(current) | set(versions)):
                        if current.get(key) != versions.get(key):
                            self._publish(ChangeEvent(rollout=key, at=now))
                if seen_events is not None:
                    for uid, event in events.items():
                        if uid not in seen_events:
                            self._publish(event)
                versions, seen_events = current, set(events)
                self.rounds += 1
            await asyncio.sleep(self.poll_seconds)

    async def _versions(self) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
        """Per rollout key: the resourceVersions of the Rollout and its AnalysisRuns; and each canary weight."""
        found_rollouts = await self._list(rollouts)
        runs = await self._list(analysis_runs)
        versions: dict[str, list[str]] = {}
        weights: dict[str, int] = {}
        for body in found_rollouts:
            key = _key(body, str((body.get("metadata") or {}).get("name", "")))
            versions[key] = [_version(body)]
            weights[key] = build_view(body, [], []).canary_weight
        for run in runs:
            owner = _owner(run)
            key = _key(run, owner) if owner else ""
            if key in versions:
                versions[key].append(_version(run))
        return {key: tuple(sorted(found)) for key, found in versions.items()}, weights

    async def _events(self) -> dict[str, ChangeEvent]:
        """The Events on Rollouts in scope, by uid; none when Events may not be listed."""
        try:
            items = await self.client.list(EVENTS, self._scope(), fields={"involvedObject.kind": "Rollout"})
        except AdapterError as error:
            if isinstance(error, TemporaryError):
                raise
            return {}
        found = {}
        for item in items:
            involved = item.get("involvedObject") or {}
            if involved.get("kind") != "Rollout":
                continue
            meta = item.get("metadata") or {}
            uid = str(meta.get("uid") or meta.get("name") or "") + "@" + str(item.get("count") or 1)
            found[uid] = ChangeEvent(
                rollout=f"{involved.get('namespace') or meta.get('namespace') or 'default'}/{involved.get('name')}",
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or ""),
                type=str(item.get("type") or "Normal"),
                at=item.get("lastTimestamp") or item.get("eventTime") or None,
            )
        return found

    # --- helpers ---------------------------------------------------------------------------------------------

    def _scope(self) -> str:
        return self.namespace if self.namespace is not None else ALL_NS

    def _check_scope(self, name: str, namespace: str) -> None:
        if self.namespace is not None and namespace != self.namespace:
            raise RolloutNotFoundError(
                f"no rollout named {name} in namespace {namespace}: this dashboard shows namespace {self.namespace}"
            )

    async def _read(self, call: Awaitable[T]) -> T:
        """Await an API read; an unreachable server is `SourceUnavailableError` saying what to check."""
        try:
            return await call
        except AdapterError as error:
            message = str(failure(error, self.client.server))
            if ": 403" in message and self.namespace is None:
                message += " (listing every namespace needs cluster-wide read access: try -n NAMESPACE)"
            raise SourceUnavailableError(message) from None

    def _remember(self, key: str, weight: int) -> None:
        points = self._weights.setdefault(key, collections.deque(maxlen=WEIGHT_POINTS))
        if not points or points[-1].set != weight:
            points.append(WeightPoint(at=datetime.now(UTC), set=weight))

    def _publish(self, change: ChangeEvent) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)


def _key(body: Body, name: str) -> str:
    return f"{(body.get('metadata') or {}).get('namespace') or 'default'}/{name}"


def _version(body: Body) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _owner(run: Body) -> str:
    """The rollout an AnalysisRun belongs to: its owner reference, else the label the controller sets."""
    meta = run.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Rollout" and ref.get("name"):
            return str(ref["name"])
    return str((meta.get("labels") or {}).get(ROLLOUT_LABEL) or "")


def _revision(args: Mapping[str, Any]) -> int | None:
    to_revision = args.get("toRevision")
    if to_revision is None:
        return None
    if not isinstance(to_revision, int) or isinstance(to_revision, bool) or to_revision < 1:
        raise ActionRefusedError("toRevision: expected a revision number (1 or more)")
    return to_revision
