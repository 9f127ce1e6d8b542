"""The shared Platform and StatusStore contracts, run against the embedded mode's adapters.

The contract tests are imported from their suites and collected here, where the ``platform`` and ``store``
fixtures build a `LocalPlatform` (real processes: ``sleep`` plays the image's entrypoint, since the contract's
rollouts name no command) and a `SqliteStore` on a fresh state directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.platforms.base import Platform
from headway.platforms.local import LocalPlatform
from headway.spec.rollout import Rollout
from headway.stores.base import StatusStore
from headway.stores.sqlite import SqliteStore
from tests.contract.test_platform import (
    test_a_created_revision_reads_back,
    test_creating_an_existing_revision_scales_it,
    test_creating_twice_is_creating_once,
    test_deleting_an_unknown_revision_is_a_no_op,
    test_deleting_is_idempotent,
    test_restarting_keeps_the_replica_count,
    test_rollouts_do_not_see_each_others_revisions,
    test_scaling_reads_back_and_is_idempotent,
    test_switching_a_service_twice_is_switching_once,
)
from tests.contract.test_store import (
    test_a_key_never_saved_loads_empty,
    test_a_saved_status_reads_back_with_its_new_version,
    test_a_stale_version_conflicts_and_does_not_overwrite,
    test_creating_what_exists_conflicts,
    test_every_write_moves_the_version,
    test_keys_are_independent,
)
from tests.scenarios.harness import canary

__all__ = [
    "test_a_created_revision_reads_back",
    "test_a_key_never_saved_loads_empty",
    "test_a_saved_status_reads_back_with_its_new_version",
    "test_a_stale_version_conflicts_and_does_not_overwrite",
    "test_creating_an_existing_revision_scales_it",
    "test_creating_twice_is_creating_once",
    "test_creating_what_exists_conflicts",
    "test_deleting_an_unknown_revision_is_a_no_op",
    "test_deleting_is_idempotent",
    "test_every_write_moves_the_version",
    "test_keys_are_independent",
    "test_restarting_keeps_the_replica_count",
    "test_rollouts_do_not_see_each_others_revisions",
    "test_scaling_reads_back_and_is_idempotent",
    "test_switching_a_service_twice_is_switching_once",
]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    local = LocalPlatform(tmp_path / "platform", default_command=("sleep", "600"))
    yield local
    local.close()


@pytest.fixture
def rollout() -> Rollout:
    return canary()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StatusStore]:
    sqlite = SqliteStore(tmp_path / "store")
    yield sqlite
    sqlite.close()
