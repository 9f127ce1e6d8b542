"""Cluster operations for the CLI (`headway ... --context`, `kubectl headway ...`) and the cluster dashboard.

The controls are the pure functions of `headway.core.commands`; this module only reads the Rollout, applies the
function, and writes back what changed, exactly as ``kubectl argo rollouts`` does: spec fields (paused, restartAt,
template) on the main resource, requests (pause conditions, abort) on ``/status``. Every write is a JSON patch that
carries the resourceVersion it was computed from, so a controller pass in between makes it 409; we then re-read and
apply the control again (never overwrite what the controller just decided). All API calls go through `KubeClient`.

Reads build one `RolloutView` from a Rollout, the ReplicaSets and AnalysisRuns it owns (measurements and the judge's
evidence via `headway.dashboard.runs`) and, for the dashboard, its Events; `follow` re-reads a view until it
changes (``--watch``). The same `Cluster` serves the CLI and the cluster dashboard (`dashboard_source`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lightkube import ALL_NS
from pydantic import ValidationError

from headway.core import commands
from headway.core.errors import AdapterError, PermanentError, TemporaryError
from headway.dashboard.model import (
    EventView,
    PodView,
    RevisionView,
    RolloutView,
    observed_phase,
    steps_of,
    with_roles,
)
from headway.dashboard.runs import run_view_of
from headway.kube.client import (
    DEFAULT_GROUP,
    EVENTS,
    REPLICA_SETS,
    RUN_KIND_LABEL,
    ApiConflictError,
    Body,
    KubeClient,
    KubeconfigError,
    analysis_runs,
    experiments,
    rollouts,
)
from headway.platforms.kubernetes import HASH_LABEL, PODS, REVISION_ANNOTATION, ephemeral_of, written_template
from headway.spec.rollout import Rollout
from headway.stores.k8s_status import status_of, status_wire

Shown = TypeVar("Shown", RolloutView, list[RolloutView])

CONFLICT_RETRIES = 5
"""Re-reads after a 409 before giving up (each one means the controller wrote in between)."""
EVENT_LIMIT = 50
"""Events shown per rollout (the newest)."""
WATCH_INTERVAL = 1.0
"""Seconds between two reads of a watched view."""
WATCH_PATIENCE = 30.0
"""Seconds a watch keeps retrying an unreachable server before it gives up."""


class OperationError(Exception):
    """A control or read failed; the message says what to do next (the CLI prints it as is)."""


class RolloutMissingError(OperationError):
    """There is no rollout of that name in the namespace (the message lists the ones there are)."""


@dataclass(frozen=True)
class Target:
    """Which cluster and namespace: a kubeconfig context, like kubectl's flags."""

    context: str | None = None
    namespace: str | None = None
    kubeconfig: Path | None = None
    group: str | None = None
    """The API group of the Rollouts (``--api-group``); None: the one the cluster serves (`discover_groups`)."""

    def connect(self) -> tuple[KubeClient, str, str]:
        """A client, the namespace to use (flag, else the context's, else ``default``) and the server URL."""
        try:
            client = KubeClient.from_kubeconfig(self.kubeconfig, context=self.context, field_manager="headway-cli")
        except KubeconfigError as error:
            raise OperationError(str(error)) from None
        return client, self.namespace or client.namespace, client.server


GROUPS = (DEFAULT_GROUP, "argoproj.io")
"""The API groups a Rollout may live in, in the order `discover_groups` prefers them."""


async def discover_groups(client: KubeClient) -> tuple[str, ...]:
    """The groups of `GROUPS` whose Rollouts the cluster serves (API discovery), preferred first; none is an
    `OperationError` that says what to install or which flag to pass."""
    served = tuple([group for group in GROUPS if await client.serves(group, "v1alpha1", "rollouts")])
    if not served:
        raise OperationError(
            f"the cluster at {client.server} serves no Rollouts (neither headway.dev nor argoproj.io): "
            "install the CRDs (kubectl apply -k deploy/base) or pass --api-group"
        )
    return served


class Cluster:
    """The CLI's operations on one namespace of a cluster.

    ``also``: further API groups the cluster serves Rollouts in; a rollout not found in ``group`` is looked for
    there (a cluster with both Headway's and Argo's CRDs), and the group it is found in is used from then on."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        group: str = DEFAULT_GROUP,
        server: str = "",
        also: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.server = server
        self.also = tuple(g for g in also if g != group)
        self._use(group)

    def _use(self, group: str) -> None:
        self.group = group
        self.kind = rollouts(group)
        self.runs = analysis_runs(group)
        self.experiments = experiments(group)

    # --- reads ------------------------------------------------------------------------------------------------

    async def rollout(self, name: str) -> Body:
        body = await self.client.get(self.kind, name, self.namespace)
        for group in self.also if body is None else ():
            body = await self.client.get(rollouts(group), name, self.namespace)
            if body is not None:
                self._use(group)
                self.also = ()
                break
        if body is None:
            names = [item["metadata"]["name"] for item in await self.client.list(self.kind, self.namespace)]
            known = ", ".join(sorted(names)) or "none"
            raise RolloutMissingError(f"no rollout named {name} in namespace {self.namespace} (known: {known})")
        return body

    async def view(self, name: str, *, events: bool = False) -> RolloutView:
        """The rollout as the dashboard and `headway.cli.views` show it: its ReplicaSets (revisions, readiness,
        images), its AnalysisRuns with their measurements and the judge's evidence, and with ``events`` the
        Kubernetes Events posted on it (newest first)."""
        body = await self.rollout(name)
        replica_sets = _owned(await self.client.list(REPLICA_SETS, self.namespace), body)
        runs = await self.client.list(self.runs, self.namespace)
        selector = ((body.get("spec") or {}).get("selector") or {}).get("matchLabels") or None
        pods = await self.client.list(PODS, self.namespace, selector) if replica_sets else []
        view = build_view(body, replica_sets, _owned(runs, body), pods, await self._experiments(body))
        if events:
            view = view.model_copy(update={"events": await self.events(name)})
        return view

    async def _experiments(self, body: Body) -> list[Body]:
        """The Experiments of a rollout with experiment steps (none asked for otherwise, nor when the cluster has
        no Experiment resource or the user may not list it)."""
        steps = (((body.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps") or []
        if not any("experiment" in step for step in steps):
            return []
        try:
            return _owned(await self.client.list(self.experiments, self.namespace), body)
        except PermanentError:
            return []

    async def events(self, name: str, *, limit: int = EVENT_LIMIT) -> list[EventView]:
        """The Events on rollout ``name``, newest first; none when the user may not list Events (RBAC)."""
        fields = {"involvedObject.name": name, "involvedObject.kind": "Rollout"}
        try:
            items = await self.client.list(EVENTS, self.namespace, fields=fields)
        except PermanentError:  # forbidden, or a server without core/v1 events: the view goes without them
            return []
        mine = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
        mine.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
        return [
            EventView(
                at=e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp"),
                type=str(e.get("type") or "Normal"),
                reason=str(e.get("reason") or ""),
                message=str(e.get("message") or ""),
            )
            for e in mine[:limit]
        ]

    async def views(self, *, all_namespaces: bool = False) -> list[RolloutView]:
        """Summaries of every rollout in the namespace (or all namespaces)."""
        scope = ALL_NS if all_namespaces else self.namespace
        items = await self.client.list(self.kind, scope)
        for group in self.also:
            items += await self.client.list(rollouts(group), scope)
        return [build_view(item, [], []) for item in items]

    # --- controls ---------------------------------------------------------------------------------------------

    async def promote(self, name: str, *, full: bool = False) -> RolloutView:
        async def change(rollout: Rollout, body: Body) -> tuple[Rollout, Any]:
            return commands.promote(rollout, status_of(body), full=full)

        return await self._control(name, change)

    async def abort(self, name: str) -> RolloutView:
        return await self._control(name, _status_only(commands.abort))

    async def retry(self, name: str) -> RolloutView:
        return await self._control(name, _status_only(commands.retry))

    async def pause(self, name: str) -> RolloutView:
        return await self._control(name, _spec_only(commands.pause))

    async def resume(self, name: str) -> RolloutView:
        return await self._control(name, _spec_only(commands.resume))

    async def restart(self, name: str, now: datetime | None = None) -> RolloutView:
        moment = now or datetime.now(UTC)
        return await self._control(name, _spec_only(lambda rollout: commands.restart(rollout, moment)))

    async def undo(self, name: str, to_revision: int | None = None) -> RolloutView:
        """Write an earlier ReplicaSet's pod template into spec.template (default: the revision before the newest)."""

        async def change(rollout: Rollout, body: Body) -> tuple[Rollout, Any]:
            replica_sets = _owned(await self.client.list(REPLICA_SETS, self.namespace), body)
            template = _template_of(replica_sets, to_revision, name)
            return commands.undo(rollout, template), None

        return await self._control(name, change)

    async def set_image(self, name: str, container: str, image: str) -> RolloutView:
        """Change one container's image in spec.template (which starts an update)."""

        async def change(rollout: Rollout, body: Body) -> tuple[Rollout, Any]:
            template = dict(rollout.spec.template or {})
            spec = dict(template.get("spec") or {})
            containers = [dict(c) for c in spec.get("containers") or []]
            names = [str(c.get("name")) for c in containers]
            if container not in names:
                raise OperationError(f"rollout {name} has no container {container} (containers: {', '.join(names)})")
            for entry in containers:
                if entry.get("name") == container:
                    entry["image"] = image
            template["spec"] = {**spec, "containers": containers}
            return commands.undo(rollout, template), None  # "write this template" is exactly undo's semantics

        return await self._control(name, change)

    async def _control(
        self, name: str, change: Callable[[Rollout, Body], Awaitable[tuple[Rollout, Any]]]
    ) -> RolloutView:
        """Read, apply ``change`` (new rollout, new status or None), write the changed parts with the version read."""
        for _ in range(CONFLICT_RETRIES):
            body = await self.rollout(name)
            try:
                rollout = Rollout.model_validate(body)
            except ValidationError as error:
                raise OperationError(f"rollout {name} does not parse: {error.errors()[0]['msg']}") from None
            try:
                new_rollout, new_status = await change(rollout, body)
            except commands.ControlError as error:
                raise OperationError(f"rollout {name}: {error}") from None
            version = str(body["metadata"]["resourceVersion"])
            try:
                if new_status is not None and new_status != status_of(body):
                    wire = status_wire(new_status, self.kind.group)
                    saved = await self._patch(name, version, "/status", wire, status=True)
                    version = str(saved["metadata"]["resourceVersion"])
                await self._write_spec(name, version, rollout, new_rollout)
            except ApiConflictError:
                continue
            return await self.view(name)
        raise OperationError(f"rollout {name} kept changing while the control was written: try again")

    async def _write_spec(self, name: str, version: str, old: Rollout, new: Rollout) -> None:
        old_spec = old.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
        new_spec = new.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
        ops: list[Body] = [{"op": "add", "path": "/metadata/resourceVersion", "value": version}]
        for key in sorted(set(old_spec) | set(new_spec)):
            if key not in new_spec:
                ops.append({"op": "remove", "path": f"/spec/{key}"})
            elif old_spec.get(key) != new_spec[key]:
                ops.append({"op": "add", "path": f"/spec/{key}", "value": new_spec[key]})
        if len(ops) > 1:
            await self.client.patch(self.kind, name, self.namespace, ops)

    async def _patch(self, name: str, version: str, path: str, value: Any, *, status: bool = False) -> Body:
        ops: list[Body] = [
            {"op": "add", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": path, "value": value},
        ]
        return await self.client.patch(self.kind, name, self.namespace, ops, status=status)


def _status_only(control: Callable[[Any], Any]) -> Callable[[Rollout, Body], Awaitable[tuple[Rollout, Any]]]:
    async def change(rollout: Rollout, body: Body) -> tuple[Rollout, Any]:
        return rollout, control(status_of(body))

    return change


def _spec_only(control: Callable[[Rollout], Rollout]) -> Callable[[Rollout, Body], Awaitable[tuple[Rollout, Any]]]:
    async def change(rollout: Rollout, body: Body) -> tuple[Rollout, Any]:
        return control(rollout), None

    return change


def _owned(items: list[Body], owner: Body) -> list[Body]:
    """The objects whose ownerReferences name ``owner`` (by uid when both have one, else by kind and name)."""
    meta = owner.get("metadata") or {}
    found = []
    for item in items:
        for ref in (item.get("metadata") or {}).get("ownerReferences") or []:
            same_uid = ref.get("uid") and meta.get("uid") and ref.get("uid") == meta.get("uid")
            if same_uid or (ref.get("kind") == "Rollout" and ref.get("name") == meta.get("name")):
                found.append(item)
                break
    return found


def _revision_number(rs: Body) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _template_of(replica_sets: list[Body], to_revision: int | None, name: str) -> dict[str, Any]:
    """The pod template of revision ``to_revision`` (default: the second newest) as the user wrote it: the copy
    kept on the ReplicaSet when there is one (the server defaults ``spec.template``, which would hash as a new
    revision), else ``spec.template`` without our hash label and ephemeral metadata."""
    ordered = sorted(replica_sets, key=_revision_number, reverse=True)
    numbers = [_revision_number(rs) for rs in ordered]
    if to_revision is None:
        if len(ordered) < 2:
            raise OperationError(f"rollout {name} has no earlier revision to go back to")
        chosen = ordered[1]
    else:
        matching = [rs for rs in ordered if _revision_number(rs) == to_revision]
        if not matching:
            known = ", ".join(str(n) for n in numbers) or "none"
            raise OperationError(f"rollout {name} has no revision {to_revision} (revisions: {known})")
        chosen = matching[0]
    written = written_template(chosen)
    if written is not None:
        return written
    template: dict[str, Any] = dict((chosen.get("spec") or {}).get("template") or {})
    meta = dict(template.get("metadata") or {})
    # Our hash label and the ephemeral metadata of its last role (canaryMetadata etc.) are not the user's
    # template: left in, the template would hash differently and undo would start a new revision.
    ephemeral_labels, ephemeral_annotations = ephemeral_of(chosen)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != HASH_LABEL and k not in ephemeral_labels}
    meta["labels"] = labels
    if "annotations" in meta:
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in ephemeral_annotations}
    template["metadata"] = meta
    return template


def _name(body: Body) -> str:
    return str((body.get("metadata") or {}).get("name", ""))


def _created(body: Body) -> tuple[str, str]:
    return str((body.get("metadata") or {}).get("creationTimestamp") or ""), _name(body)


def _image(template: Any) -> str | None:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return str(containers[0].get("image")) if containers and containers[0].get("image") else None


def _pod_view(pod: Body) -> PodView:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    total = len(containers) or len(((pod.get("spec") or {}).get("containers")) or [])
    ready = sum(1 for c in containers if c.get("ready"))
    return PodView(
        name=str(meta.get("name", "")),
        phase="Terminating" if meta.get("deletionTimestamp") else str(status.get("phase") or "Pending"),
        ready=f"{ready}/{total}",
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
    )


def _pods_by_owner(pods: list[Body]) -> dict[str, list[PodView]]:
    """Pods by the name of the ReplicaSet that owns them, sorted by name."""
    found: dict[str, list[PodView]] = {}
    for pod in sorted(pods, key=_name):
        for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                found.setdefault(str(ref.get("name")), []).append(_pod_view(pod))
    return found


def build_view(
    body: Body,
    replica_sets: list[Body],
    runs: list[Body],
    pods: list[Body] | None = None,
    experiment_bodies: list[Body] | None = None,
) -> RolloutView:
    """A Rollout with its ReplicaSets, AnalysisRuns, pods and Experiments (wire dicts) as one `RolloutView`. Pure."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    strategy = "blueGreen" if "blueGreen" in (spec.get("strategy") or {}) else "canary"
    revisions = []
    images: dict[str, str | None] = {}
    pods_of = _pods_by_owner(pods or [])
    for rs in sorted(replica_sets, key=_revision_number, reverse=True):
        pod_hash = ((rs.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL)
        if not pod_hash:
            continue
        rs_status = rs.get("status") or {}
        images[pod_hash] = _image((rs.get("spec") or {}).get("template"))
        revisions.append(
            RevisionView(
                hash=pod_hash,
                number=_revision_number(rs),
                replicas=int((rs.get("spec") or {}).get("replicas") or 0),
                ready=int(rs_status.get("readyReplicas") or 0),
                available=int(rs_status.get("availableReplicas") or 0),
                image=images[pod_hash],
                pods=pods_of.get(_name(rs), []),
            )
        )
    run_views = [run_view_of(run, kind_label=RUN_KIND_LABEL) for run in sorted(runs, key=_created)]
    experiment_views = [
        run_view_of(experiment, kind_label=RUN_KIND_LABEL)
        for experiment in sorted(experiment_bodies or [], key=_created)
    ]
    weights = ((status.get("canary") or {}).get("weights") or {}).get("canary") or {}
    steps = steps_of(spec)
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    phase, message = observed_phase(
        status.get("phase"), str(status.get("message") or ""), meta.get("generation"), status.get("observedGeneration")
    )
    view = RolloutView(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or "default"),
        strategy=strategy,
        phase=phase,
        message=message,
        paused=bool(spec.get("paused") or status.get("pauseConditions")),
        aborted=bool(status.get("abort")),
        step=status.get("currentStepIndex"),
        steps=len(steps) if strategy == "canary" else None,
        canary_weight=int(weights.get("weight") or 0),
        stable_hash=stable,
        current_hash=current,
        stable_image=images.get(stable) if stable else None,
        current_image=_image(spec.get("template")),
        replicas=int(spec.get("replicas", 1) or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        step_list=steps,
        revisions=revisions,
        analysis_runs=run_views,
        experiments=experiment_views,
        spec=spec,
        status=status,
    )
    return with_roles(view)


def failure(error: AdapterError, server: str) -> OperationError:
    """An API or network failure as what to do next: an unreachable server names itself and the flags to check."""
    text = str(error)
    if any(marker in text for marker in ("ConnectError", "Timeout", "OSError", "ConnectionRefused")):
        return OperationError(f"cannot reach the cluster at {server}: check --context and --kubeconfig")
    return OperationError(text)


@contextlib.asynccontextmanager
async def connected(target: Target) -> AsyncIterator[Cluster]:
    """A `Cluster` for ``target`` inside a running event loop, closed afterwards; failures become `OperationError`."""
    client, namespace, server = target.connect()
    try:
        groups = (target.group,) if target.group else await discover_groups(client)
        yield Cluster(client, namespace, group=groups[0], server=server, also=groups[1:])
    except AdapterError as error:
        raise failure(error, server) from None
    finally:
        await client.close()


def run(target: Target, operation: Callable[[Cluster], Awaitable[Any]]) -> Any:
    """Connect, run ``operation``, close; API and network failures become `OperationError` naming the server."""

    async def main() -> Any:
        async with connected(target) as cluster:
            return await operation(cluster)

    return asyncio.run(main())


async def follow(
    read: Callable[[], Awaitable[Shown]], *, interval: float = WATCH_INTERVAL, patience: float = WATCH_PATIENCE
) -> AsyncIterator[Shown]:
    """``read()`` now and then every time its answer changes, polling every ``interval`` seconds; never ends.

    Polling (not a watch stream) because a view joins three kinds of object (Rollout, ReplicaSets, AnalysisRuns):
    one GET and two LISTs per round cost the server little at a second's interval, survive reconnects for free,
    and see exactly what `get` would print. Once a first read succeeded, temporary failures (the server restarting,
    a network blip) are retried for up to ``patience`` seconds, keeping the last view on screen; the first read,
    and anything permanent (the rollout deleted, access revoked), fails at once."""
    last: Any = None
    failing_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await read()
        except TemporaryError:
            now = loop.time()
            failing_since = now if failing_since is None else failing_since
            if last is None or now - failing_since > patience:
                raise
        else:
            failing_since = None
            shown = [v.wire() for v in data] if isinstance(data, list) else data.wire()
            if shown != last:
                last = shown
                yield data
        await asyncio.sleep(interval)
