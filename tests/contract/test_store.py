"""The StatusStore contract: read-back, versions that move on every write, and conflicts instead of overwrites."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from headway.spec.status import Phase, RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError, StatusStore
from headway.stores.memory import MemoryStore

STORES: list[Callable[[], StatusStore]] = [MemoryStore]
KEY = "default/web"


@pytest.fixture(params=STORES, ids=lambda factory: getattr(factory, "__name__", "store"))
def store(request: pytest.FixtureRequest) -> StatusStore:
    factory: Callable[[], StatusStore] = request.param
    return factory()


def test_a_key_never_saved_loads_empty(store: StatusStore) -> None:
    assert store.load(KEY) == (RolloutStatus(), NO_VERSION)


def test_a_saved_status_reads_back_with_its_new_version(store: StatusStore) -> None:
    status = RolloutStatus(phase=Phase.PROGRESSING, current_step_index=2)

    version = store.save(KEY, status, NO_VERSION)

    assert store.load(KEY) == (status, version)
    assert version != NO_VERSION


def test_every_write_moves_the_version(store: StatusStore) -> None:
    first = store.save(KEY, RolloutStatus(message="one"), NO_VERSION)
    second = store.save(KEY, RolloutStatus(message="two"), first)

    assert second != first
    assert store.load(KEY)[1] == second


def test_a_stale_version_conflicts_and_does_not_overwrite(store: StatusStore) -> None:
    read = store.save(KEY, RolloutStatus(message="one"), NO_VERSION)
    store.save(KEY, RolloutStatus(message="promoted by a user"), read)

    with pytest.raises(ConflictError):
        store.save(KEY, RolloutStatus(message="stale decision"), read)

    assert store.load(KEY)[0].message == "promoted by a user"


def test_creating_what_exists_conflicts(store: StatusStore) -> None:
    store.save(KEY, RolloutStatus(), NO_VERSION)

    with pytest.raises(ConflictError):
        store.save(KEY, RolloutStatus(message="second creator"), NO_VERSION)


def test_keys_are_independent(store: StatusStore) -> None:
    store.save(KEY, RolloutStatus(message="web"), NO_VERSION)

    assert store.load("default/api") == (RolloutStatus(), NO_VERSION)


def test_memory_store_keeps_the_history_of_saves() -> None:
    store = MemoryStore()
    version = store.save(KEY, RolloutStatus(message="one"), NO_VERSION)
    store.save(KEY, RolloutStatus(message="two"), version)

    assert [status.message for status in store.saves(KEY)] == ["one", "two"]
