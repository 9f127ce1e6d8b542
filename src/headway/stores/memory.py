"""An in-memory status store: for tests, the contract suite, the simulator and ``--dry-run``.

It keeps every saved status (`history`), so tests can assert that a pass wrote once, and what.
"""

from __future__ import annotations

from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError


class MemoryStore:
    """Implements `headway.stores.base.StatusStore` with a dict and an integer counter per key."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[RolloutStatus, int]] = {}
        self.history: list[tuple[str, RolloutStatus]] = []

    def load(self, key: str) -> tuple[RolloutStatus, str]:
        entry = self._entries.get(key)
        if entry is None:
            return RolloutStatus(), NO_VERSION
        status, version = entry
        return status, str(version)

    def save(self, key: str, status: RolloutStatus, expected_version: str) -> str:
        entry = self._entries.get(key)
        actual = NO_VERSION if entry is None else str(entry[1])
        if actual != expected_version:
            raise ConflictError(key, expected_version, actual)
        version = 1 if entry is None else entry[1] + 1
        self._entries[key] = (status, version)
        self.history.append((key, status))
        return str(version)

    def saves(self, key: str) -> list[RolloutStatus]:
        """Every status saved under ``key``, oldest first."""
        return [status for saved_key, status in self.history if saved_key == key]
