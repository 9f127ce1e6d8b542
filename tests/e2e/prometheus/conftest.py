"""A session-wide real Prometheus with fixed backfilled data (see `server`): started once, in well under a second."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.prometheus import server


@pytest.fixture(scope="session")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.Backfill]:
    """The URL of a Prometheus holding `server.openmetrics` data, and the time to query it at."""
    process, data = server.backfilled(tmp_path_factory.mktemp("prometheus"))
    try:
        yield data
    finally:
        process.stop()
