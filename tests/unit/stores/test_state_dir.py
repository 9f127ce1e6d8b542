"""The state directory is locked as a directory, and it and its files are the owner's only (0700 / 0600)."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.private_files import append_private, private_dir, write_private_atomically
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION
from headway.stores.sqlite import SqliteStore, StateLockedError


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have (022): what made every file world-readable before."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_deleting_the_lock_file_does_not_let_a_second_instance_in(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path)
    try:
        (tmp_path / "lock").unlink()
        with pytest.raises(StateLockedError, match="in use by another headway process"):
            SqliteStore(tmp_path)
    finally:
        first.close()
    SqliteStore(tmp_path).close()  # released by close: the next instance gets in


def test_the_holder_is_named_while_the_lock_file_is_there(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path)
    try:
        with pytest.raises(StateLockedError, match=f"PID {os.getpid()}"):
            SqliteStore(tmp_path)
    finally:
        first.close()


def test_a_new_state_directory_and_its_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    store = SqliteStore(state)
    try:
        store.save("default/web", RolloutStatus(), NO_VERSION)  # the WAL and shared-memory files exist now
        assert mode(state) == 0o700
        for name in ("headway.db", "headway.db-wal", "headway.db-shm", "lock"):
            assert mode(state / name) == 0o600, name
    finally:
        store.close()


def test_an_older_wider_state_directory_is_narrowed(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    tmp_path.chmod(0o755)
    for name in ("headway.db", "headway.db-wal", "headway.db-shm", "lock"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    store = SqliteStore(tmp_path)
    try:
        store.save("default/web", RolloutStatus(), NO_VERSION)
        assert mode(tmp_path) == 0o700
        assert {name: mode(tmp_path / name) for name in ("headway.db", "headway.db-wal", "lock")} == {
            "headway.db": 0o600,
            "headway.db-wal": 0o600,
            "lock": 0o600,
        }
    finally:
        store.close()


def test_private_files_are_created_private_whatever_the_umask(tmp_path: Path) -> None:
    os.umask(0)
    directory = private_dir(tmp_path / "logs")
    write_private_atomically(directory / "daemon.json", '{"url": "http://127.0.0.1:1"}')
    with append_private(directory / "daemon.log") as log:
        log.write(b"line\n")
    assert mode(directory) == 0o700
    assert mode(directory / "daemon.json") == 0o600 and mode(directory / "daemon.log") == 0o600
    assert not (directory / "daemon.json.partial").exists()


def test_a_daemon_of_an_earlier_version_holding_only_the_lock_file_is_seen(tmp_path: Path) -> None:
    """Earlier versions locked ``<state>/lock`` (the file), not the directory: an upgrade must not run beside one."""
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StateLockedError, match="PID 4242"):
            SqliteStore(tmp_path)
    finally:
        os.close(fd)
    SqliteStore(tmp_path).close()
