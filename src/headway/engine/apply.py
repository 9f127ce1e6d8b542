"""Carry out a decision: dispatch each action to the adapter that does it, in the order the core chose.

Order matters (scale the canary up before routing traffic to it; route traffic away before scaling down), so
actions run one after another and the first failure stops the rest: a later action may depend on an earlier
one. The failure is returned, not raised, so the caller can decide whether to retry and can still report what
was done. Every action is idempotent, so the next pass may safely redo what this one did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from headway.core.actions import (
    Action,
    CallGate,
    CreateRevision,
    DeleteRevision,
    RemoveManagedRoutes,
    RestartRevision,
    ScaleRevision,
    ScaleWorkloadRef,
    SetHeaderRoute,
    SetMirrorRoute,
    SetPodMetadata,
    SetWeight,
    StartAnalysisRun,
    StartExperiment,
    SwitchService,
    TerminateAnalysisRun,
    TerminateExperiment,
)
from headway.core.errors import AdapterError, PermanentError, TemporaryError
from headway.engine.gates import GateBackend
from headway.engine.runs import RunBackend
from headway.platforms.base import Platform
from headway.routers.base import TrafficRouter
from headway.spec.rollout import Rollout


@dataclass(frozen=True)
class Failure:
    """The first action that failed (None when observing failed) and why."""

    action: Action | None
    error: AdapterError

    @property
    def temporary(self) -> bool:
        return isinstance(self.error, TemporaryError)

    @property
    def retry_after(self) -> float | None:
        """Seconds until a retry may help; None for a permanent failure (wait for a change instead)."""
        return self.error.delay if isinstance(self.error, TemporaryError) else None

    def describe(self) -> str:
        what = type(self.action).__name__ if self.action is not None else "observe"
        kind = "temporary" if self.temporary else "permanent"
        return f"{what} failed ({kind}): {self.error}"


@dataclass(frozen=True)
class Applied:
    """What `apply_actions` did: the actions that succeeded, in order, and the failure that stopped it."""

    done: tuple[Action, ...]
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def apply_actions(
    rollout: Rollout,
    actions: Sequence[Action],
    *,
    platform: Platform,
    router: TrafficRouter | None,
    runs: RunBackend,
    gates: GateBackend | None = None,
    now: datetime | None = None,
) -> Applied:
    """Apply ``actions`` in order; stop at the first adapter error and report it with what was done before."""
    done: list[Action] = []
    for action in actions:
        try:
            apply_action(rollout, action, platform=platform, router=router, runs=runs, gates=gates, now=now)
        except AdapterError as error:
            return Applied(done=tuple(done), failure=Failure(action=action, error=error))
        done.append(action)
    return Applied(done=tuple(done))


def apply_action(  # noqa: C901 - one branch per kind it dispatches on, kept together on purpose
    rollout: Rollout,
    action: Action,
    *,
    platform: Platform,
    router: TrafficRouter | None,
    runs: RunBackend,
    gates: GateBackend | None = None,
    now: datetime | None = None,
) -> None:
    """Dispatch one action to its adapter."""
    match action:
        case CreateRevision(hash=pod_hash, number=number, replicas=replicas):
            platform.create_revision(rollout, pod_hash, number, replicas)
        case ScaleRevision(hash=pod_hash, replicas=replicas):
            platform.scale_revision(rollout, pod_hash, replicas)
        case DeleteRevision(hash=pod_hash):
            platform.delete_revision(rollout, pod_hash)
        case RestartRevision(hash=pod_hash, before=before):
            platform.restart_revision(rollout, pod_hash, before)
        case SetPodMetadata(hash=pod_hash, metadata=metadata):
            platform.set_pod_metadata(rollout, pod_hash, metadata)
        case ScaleWorkloadRef(replicas=replicas):
            platform.scale_workload_ref(rollout, replicas)
        case SwitchService(role=role, service=service, hash=pod_hash):
            platform.switch_service(rollout, role, service, pod_hash)
        case SetWeight(canary_weight=weight, canary_hash=canary_hash, stable_hash=stable_hash):
            _router(rollout, router, action).set_weight(rollout, weight, canary_hash, stable_hash)
        case SetHeaderRoute(name=name, match=match):
            _router(rollout, router, action).set_header_route(rollout, name, match)
        case SetMirrorRoute(name=name, match=match, percentage=percentage):
            _router(rollout, router, action).set_mirror_route(rollout, name, match, percentage)
        case RemoveManagedRoutes():
            _router(rollout, router, action).remove_managed_routes(rollout)
        case StartAnalysisRun():
            runs.start_analysis(rollout, action)
        case TerminateAnalysisRun(name=name):
            runs.terminate_analysis(rollout, name)
        case StartExperiment():
            runs.start_experiment(rollout, action)
        case TerminateExperiment(name=name):
            runs.terminate_experiment(rollout, name)
        case CallGate():
            if gates is None or now is None:
                raise PermanentError(f"{rollout.name} declares gate webhooks, but no gate backend is configured")
            gates.call(rollout, action, now)
        case _:
            assert_never(action)


def _router(rollout: Rollout, router: TrafficRouter | None, action: Action) -> TrafficRouter:
    if router is None:
        # Loud, not silent: a routing action without a router means the wiring or the core is wrong.
        raise PermanentError(
            f"{type(action).__name__} needs a traffic router, but none is configured for {rollout.name}"
        )
    return router
