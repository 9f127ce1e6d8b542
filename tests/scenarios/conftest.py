"""Fixtures for scenario tests (whole rollout stories in virtual time); the helpers live in `harness`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.scenarios import harness


@pytest.fixture
def simulate() -> Callable[..., harness.SimResult]:
    """`run_scenario` itself, for tests that prefer a fixture to an import."""
    return harness.run_scenario


@pytest.fixture
def examples() -> Path:
    """The repository's ``examples/`` directory (ready-to-run manifests)."""
    return harness.EXAMPLES
