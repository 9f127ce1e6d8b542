"""Suite-wide markers: ``pytest -m "not slow"`` is the fast loop (the pure core, the adapters' unit tests).

Everything that starts real processes or servers (``e2e/``, ``faults/``), and the few unit modules that do
(real replicas, statistical sweeps), is marked ``slow`` here, by place, so a new test there is marked without
anyone remembering to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SLOW_DIRECTORIES = ("e2e", "faults")
SLOW_MODULES = (
    "unit/core/test_judge.py",  # false-rollback rates measured over hundreds of simulated rollouts
    "unit/core/test_invariants.py",  # hypothesis over whole rollouts
    "unit/platforms/test_local.py",  # real replica processes
    "unit/cli/test_base_install.py",  # a headway subprocess per case
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = item.path.resolve().relative_to(HERE)
        except ValueError:
            continue
        if relative.parts[0] in SLOW_DIRECTORIES or relative.as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
