"""The two failures an adapter may report, as kopf names them: try again later, or do not try again.

Adapters translate their library's exceptions into these at their boundary (a 409 or a timeout is temporary, a
403 or an invalid object permanent). The engine stops applying a decision at the first one and reports it; it
never lets one kill the loop that called it. Anything else escaping an adapter is a bug and propagates.

They live in the core (which never raises them) so that every adapter layer can import them.
"""

from __future__ import annotations

DEFAULT_RETRY_DELAY = 10.0
"""Seconds before retrying a temporary failure when the adapter does not know better."""


class AdapterError(Exception):
    """A failure reported by an adapter; see `TemporaryError` and `PermanentError`."""


class TemporaryError(AdapterError):
    """Worth retrying after ``delay`` seconds (a conflict, a timeout, a server that is starting)."""

    def __init__(self, message: str = "", delay: float = DEFAULT_RETRY_DELAY) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(AdapterError):
    """Retrying as is will fail again (forbidden, invalid, not configured): wait for the spec to change."""
