"""Where revisions run: the port the engine scales, restarts and points Services through.

A revision is one pod template (identified by its hash) running at some replica count: a ReplicaSet on
Kubernetes, a group of processes on one machine, a dict entry in the fake. The engine reads the revisions of a
rollout once per pass and then applies the core's actions through the other methods, in order. Every method that
changes something is idempotent, because a pass can stop between two actions and the next pass re-decides from
what it then observes. Adapters turn their library's exceptions into ``TemporaryError``/``PermanentError`` at this
boundary; nothing else may escape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from headway.core.actions import ServiceRole
from headway.core.observation import RevisionState
from headway.spec.rollout import PodMetadata, Rollout


class Platform(Protocol):
    """Runs the revisions of rollouts and points their Services at one of them."""

    def revisions(self, rollout: Rollout) -> Mapping[str, RevisionState]:
        """Every revision of ``rollout`` by hash, scaled-down ones included; reads only, changes nothing."""
        ...

    def create_revision(self, rollout: Rollout, hash: str, number: int, replicas: int) -> None:
        """Start ``rollout.spec.template`` as revision ``hash`` at ``replicas``; idempotent (existing: scale to it)."""
        ...

    def scale_revision(self, rollout: Rollout, hash: str, replicas: int) -> None:
        """Set the desired replicas of an existing revision; idempotent; scale-down may remove unready pods first."""
        ...

    def delete_revision(self, rollout: Rollout, hash: str) -> None:
        """Remove a revision and its pods; idempotent (a missing revision is already deleted)."""
        ...

    def restart_revision(self, rollout: Rollout, hash: str, before: datetime | None = None) -> None:
        """With ``before``: replace one pod created before it, only while none is being replaced and all are
        available (idempotent: asking again mid-replacement does nothing). Without: replace every pod, one at a
        time at the platform's pace; repeating it restarts them again (the core asks once)."""
        ...

    def switch_service(self, rollout: Rollout, role: ServiceRole, service: str, hash: str) -> None:
        """Point ``service`` at the pods of revision ``hash`` only; idempotent."""
        ...

    def set_pod_metadata(self, rollout: Rollout, hash: str, metadata: PodMetadata | None) -> None:
        """Give revision ``hash`` (its template and its running pods, in place) exactly these ephemeral labels and
        annotations, removing ones an earlier call added; idempotent; a missing revision or a platform without pod
        metadata: nothing to do."""
        ...

    def scale_workload_ref(self, rollout: Rollout, replicas: int) -> None:
        """Scale the workload ``spec.workloadRef`` names down to at most ``replicas`` (never up); idempotent; a
        platform without referenced workloads (embedded mode) accepts and ignores it."""
        ...
