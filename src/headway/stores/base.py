"""Status persistence: the port through which a pass reads the last decision and writes the next one, once.

Writes are optimistic: `save` names the version the pass read and fails with `ConflictError` when someone else
(another replica, a user's ``promote``) wrote in between. The engine then drops its decision and re-reads on the
next pass; it never overwrites, because a lost ``abort`` or ``promote`` is worse than a repeated pass. Versions are
opaque strings (Kubernetes' ``resourceVersion`` is one); `NO_VERSION` stands for "nothing saved yet".
"""

from __future__ import annotations

from typing import Protocol

from headway.spec.status import RolloutStatus

NO_VERSION = ""
"""The version of a key that was never saved; saving with it creates the entry."""


class ConflictError(Exception):
    """The stored version is not the one the writer read: re-read, re-decide, never overwrite."""

    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(f"status of {key} moved from version {expected!r} to {actual!r}")
        self.key = key
        self.expected = expected
        self.actual = actual


class StatusStore(Protocol):
    """Loads and saves the status of rollouts by key (``namespace/name``)."""

    def load(self, key: str) -> tuple[RolloutStatus, str]:
        """The saved status and its version; an empty status and `NO_VERSION` when never saved; reads only."""
        ...

    def save(self, key: str, status: RolloutStatus, expected_version: str) -> str:
        """Store ``status`` if the version is still ``expected_version`` and return the new one; else ConflictError."""
        ...
