"""Fixtures for the embedded runtime's unit tests."""

from __future__ import annotations

import pytest

from tests.unit.runtimes.embedded.world import World


@pytest.fixture
def world() -> World:
    return World()
