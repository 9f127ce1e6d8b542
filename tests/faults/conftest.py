"""The fault-injection suite's record: every test adds a row (fault, requests sent, requests failed by the
machinery, outcome); the rows are printed as a table at the end of the run and written to ``results.json`` here.

"Failed by the machinery" counts what the load generator saw fail without the app's own stamp (refused or reset
connections, the proxy's 502/503/504, timeouts): a faulty version's injected 500s are the app's, and are what
analysis is for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.faults.harness import DaemonProcess, MetricEndpoint, running_daemon

RESULTS_FILE = Path(__file__).with_name("results.json")
_rows: list[dict[str, Any]] = []

Record = Callable[..., None]


@pytest.fixture
def record_fault(request: pytest.FixtureRequest) -> Iterator[Record]:
    """``record_fault(fault, sent=N, failed=N, outcome=TEXT, load=STATS)``: one row of the table, under the
    test's name; ``load`` (the load generator's stats) adds the failures by kind to ``results.json``."""

    def record(fault: str, *, sent: int, failed: int, outcome: str, load: Any = None) -> None:
        row = {"test": request.node.name, "fault": fault, "sent": sent, "failedByMachinery": failed, "outcome": outcome}
        if load is not None:
            row["load"] = load.as_dict()
        _rows.append(row)

    yield record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _rows:
        RESULTS_FILE.write_text(json.dumps(_rows, indent=1) + "\n")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _rows:
        return
    headers = ("fault", "requests sent", "failed by machinery", "outcome")
    rows = [(r["fault"], str(r["sent"]), str(r["failedByMachinery"]), r["outcome"]) for r in _rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    terminalreporter.section("fault injection results")
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    terminalreporter.write_line(f"| {line} |")
    terminalreporter.write_line("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        terminalreporter.write_line("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    terminalreporter.write_line(f"(written to {RESULTS_FILE})")


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """A real embedded daemon per test (as in the embedded end-to-end tests), shut down with what it started."""
    async for process in running_daemon(tmp_path):
        yield process


@pytest_asyncio.fixture
async def metric() -> AsyncIterator[MetricEndpoint]:
    """A local metric endpoint whose answers a test scripts (HTTP 500s, timeouts, values)."""
    endpoint = MetricEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.close()
