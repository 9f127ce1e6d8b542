"""Fixtures for the embedded runtime's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.runtimes.embedded.world import World


@pytest.fixture
def world() -> Iterator[World]:
    world = World()
    yield world
    world.runner.close()  # the runner's worker thread
