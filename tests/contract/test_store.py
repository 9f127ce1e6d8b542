"""The StatusStore contract: read-back, versions that move on every write, and conflicts instead of overwrites.

Run against every store (`tests.contract.adapters.STORES`): memory, SQLite, and the Rollout's /status
subresource on the API server emulator.
"""

from __future__ import annotations

import pytest

from headway.kube.client import rollouts
from headway.spec.status import Phase, RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError, StatusStore
from headway.stores.k8s_status import KubernetesStatusStore
from headway.stores.memory import MemoryStore
from tests.contract import adapters
from tests.e2e.kubernetes.emulator import ApiServer

KEY = "default/web"


@pytest.fixture(params=adapters.params(adapters.STORES))
def store(request: pytest.FixtureRequest) -> StatusStore:
    entry: adapters.Adapter[StatusStore] = request.param
    return entry.build(request)


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


def test_a_status_written_meanwhile_is_a_conflict_not_an_overwrite(api: ApiServer) -> None:
    for app in ("web", "api"):
        api.kube.create(rollouts(), {"metadata": {"name": app, "namespace": "default"}, "spec": {}})
    store = KubernetesStatusStore(api.kube)
    read = store.save("default/web", RolloutStatus(message="one"), NO_VERSION)
    api.kube.patch(rollouts(), "web", "default", {"spec": {"paused": True}})  # a user's edit moves the version

    with pytest.raises(ConflictError):
        store.save("default/web", RolloutStatus(message="stale"), read)
    assert store.load("default/web")[0].message == "one"
