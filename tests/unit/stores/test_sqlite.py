"""The SQLite store: survives its process, refuses a second owner, and never resets state it cannot read."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from headway.spec.status import Phase, RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError
from headway.stores.sqlite import DB_NAME, SCHEMA_VERSION, SqliteStore, StateError, StateLockedError

KEY = "default/web"


def test_status_survives_closing_and_reopening(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    version = store.save(KEY, RolloutStatus(phase=Phase.PAUSED, current_step_index=3), NO_VERSION)
    store.close()

    reopened = SqliteStore(tmp_path)

    assert reopened.load(KEY) == (RolloutStatus(phase=Phase.PAUSED, current_step_index=3), version)
    reopened.close()


def _save_then_hang(state_dir: str, ready: multiprocessing.synchronize.Event) -> None:
    store = SqliteStore(state_dir)
    store.save(KEY, RolloutStatus(current_step_index=4, message="mid-rollout"), NO_VERSION)
    ready.set()
    signal.pause()


def test_a_killed_writer_leaves_its_committed_status_and_no_lock(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_save_then_hang, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(30)

    with pytest.raises(StateLockedError, match=f"PID {child.pid}"):
        SqliteStore(tmp_path)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)

    store = SqliteStore(tmp_path)
    assert store.load(KEY)[0].current_step_index == 4
    store.close()


def test_a_second_instance_on_the_same_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path)

    with pytest.raises(StateLockedError, match=f"PID {os.getpid()}") as raised:
        SqliteStore(tmp_path)
    assert str(tmp_path) in str(raised.value)

    first.close()
    SqliteStore(tmp_path).close()


def test_readers_may_open_without_the_lock(tmp_path: Path) -> None:
    owner = SqliteStore(tmp_path)
    version = owner.save(KEY, RolloutStatus(message="x"), NO_VERSION)

    reader = SqliteStore(tmp_path, lock=False)

    assert reader.load(KEY)[1] == version
    with pytest.raises(ConflictError):
        reader.save(KEY, RolloutStatus(message="stale"), NO_VERSION)
    reader.close()
    owner.close()


def test_wal_mode_is_on(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()

    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_reported_not_reset(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite at all, " * 100)

    with pytest.raises(
        StateError, match=f"{re.escape(str(tmp_path / DB_NAME))}.*not a readable headway database.*backup"
    ):
        SqliteStore(tmp_path)

    assert (tmp_path / DB_NAME).read_bytes().startswith(b"this is not sqlite")
    SqliteStore(tmp_path / "elsewhere").close()  # and the lock was released: the directory is usable again


def test_a_truncated_database_is_reported(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    for index in range(200):
        store.save(f"default/r{index}", RolloutStatus(message="x" * 500), NO_VERSION)
    store.close()
    path = tmp_path / DB_NAME
    path.write_bytes(path.read_bytes()[: 4096 * 3])

    with pytest.raises(StateError, match=re.escape(str(path))):
        reader = SqliteStore(tmp_path, lock=False)
        for index in range(200):
            reader.load(f"default/r{index}")


def test_a_newer_schema_is_reported_with_what_to_do(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))

    with pytest.raises(StateError, match=f"newer headway \\(schema {SCHEMA_VERSION + 1}.*upgrade headway"):
        SqliteStore(tmp_path)


def test_a_foreign_sqlite_database_is_reported(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")

    with pytest.raises(StateError, match="not headway's"):
        SqliteStore(tmp_path)


def test_an_unreadable_status_names_the_key(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.save(KEY, RolloutStatus(), NO_VERSION)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE statuses SET body = ?", ('{"phase": "Sideways"}',))

    with pytest.raises(StateError, match=f"status of {KEY}"):
        store.load(KEY)
    store.close()


def test_documents_are_versioned_like_statuses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    first = store.put_document("Rollout", KEY, {"spec": {"replicas": 2}}, NO_VERSION)
    second = store.put_document("Rollout", KEY, {"spec": {"replicas": 3}}, first)

    with pytest.raises(ConflictError):
        store.put_document("Rollout", KEY, {"spec": {"replicas": 9}}, first)
    store.put_document("AnalysisRun", "default/web-1", {"phase": "Running"}, NO_VERSION)

    assert store.get_document("Rollout", KEY) == ({"spec": {"replicas": 3}}, second)
    assert store.list_documents("Rollout") == [(KEY, {"spec": {"replicas": 3}}, second)]
    store.delete_document("Rollout", KEY)
    store.delete_document("Rollout", KEY)
    assert store.get_document("Rollout", KEY) == (None, NO_VERSION)
    assert [key for key, _, _ in store.list_documents("AnalysisRun")] == ["default/web-1"]
    store.close()
