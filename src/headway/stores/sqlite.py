"""Crash-safe state for the embedded mode: statuses and documents in SQLite (WAL), one acting instance per directory.

``kill -9`` of Headway mid-rollout must resume at the same step with the same weights, so every status write is
a committed transaction in ``<state_dir>/headway.db`` before the pass that decided it returns. WAL mode lets
readers (the CLI, a dashboard) read while the controller writes, and a committed transaction survives the death
of the process that wrote it.

Writes are optimistic like the Kubernetes ``/status`` subresource: a row's integer version moves on every write
and a writer naming a stale one gets `ConflictError` instead of overwriting a user's ``promote`` or ``abort``.
Besides statuses, the runtime keeps the applied Rollout specs and AnalysisRun data as JSON documents (kind, key)
with the same versioning.

Two instances on one state directory would both scale processes and fight over weights, so `StateLock` takes an
exclusive ``flock`` on the state directory itself for the life of the store; the loser is told which PID holds it
(written in ``<state_dir>/lock``). The lock is on the directory, not on a file in it: a lock on a file is a lock
on that inode, so deleting the file let a second instance create a new one, lock it, and run beside the first. The
kernel drops the lock when its holder dies, even by ``kill -9``, so a crash never leaves a stale lock behind.

The directory is created 0700 and the database, its ``-wal``/``-shm`` files and the lock file 0600
(`headway.private_files`): the specs it holds carry env values.

A database this code cannot read (not SQLite, damaged, or from a newer schema) is reported with the file and what
to do; it is never reset silently, because resetting would forget which revision is stable.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from headway.private_files import narrow, open_private, private_dir
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError

DB_NAME = "headway.db"
LOCK_NAME = "lock"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE statuses (key TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL)",
        "CREATE TABLE documents (kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,"
        " body TEXT NOT NULL, PRIMARY KEY (kind, key))",
    ),
)
"""Schema migrations in order: entry ``i`` takes the schema from version ``i`` to ``i + 1``. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


class StateError(Exception):
    """The state directory cannot be used as it is; the message names the file and what to do about it."""


class StateLockedError(StateError):
    """Another live process holds the state directory."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"state directory {path.parent} is in use by another headway process (PID {holder}, lock {path}); "
            "stop it first (headway down) or use another --state-dir"
        )
        self.path = path
        self.holder = holder


class StateLock:
    """An exclusive ``flock`` on the state directory, released by `release` or death; ``<state_dir>/lock`` says
    which PID holds it (only for the message: deleting that file does not release anything)."""

    def __init__(self, state_dir: Path) -> None:
        directory = private_dir(Path(state_dir))
        self.path = directory / LOCK_NAME
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLockedError(self.path, _holder(self.path)) from None
        try:
            # The file is locked too, as earlier versions locked only it: an older daemon still running is seen.
            pid_fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except BaseException:
            os.close(fd)
            raise
        try:
            fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(pid_fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(pid_fd)
            os.close(fd)
            raise StateLockedError(self.path, holder) from None
        os.ftruncate(pid_fd, 0)
        os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd
        self._pid_fd: int | None = pid_fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the directory up; idempotent."""
        if self._pid_fd is not None:
            os.close(self._pid_fd)
            self._pid_fd = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[:32] or "unknown"
    except OSError:
        return "unknown"


class SqliteStore:
    """Implements `headway.stores.base.StatusStore` (and JSON documents) on ``<state_dir>/headway.db``.

    Thread-safe: one connection guarded by a lock, so the engine's loop and an API handler may share it. With
    ``lock=True`` (the default) it owns the state directory until `close`.
    """

    def __init__(self, state_dir: Path | str, *, lock: bool = True) -> None:
        self.state_dir = private_dir(Path(state_dir))
        self.path = self.state_dir / DB_NAME
        self._lock = StateLock(self.state_dir) if lock else None
        self._mutex = threading.Lock()
        try:
            self._db = _open(self.path)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    # --- StatusStore ------------------------------------------------------------------------------------------

    def load(self, key: str) -> tuple[RolloutStatus, str]:
        row = self._one("SELECT version, body FROM statuses WHERE key = ?", (key,))
        if row is None:
            return RolloutStatus(), NO_VERSION
        version, body = row
        try:
            return RolloutStatus.model_validate_json(body), str(version)
        except ValidationError as error:
            raise StateError(
                f"{self.path}: the saved status of {key} is not readable ({error.error_count()} problems, first: "
                f"{error.errors()[0]['msg']}); restore a backup or delete the rollout's state with headway"
            ) from None

    def save(self, key: str, status: RolloutStatus, expected_version: str) -> str:
        return self._write("statuses", "key = ?", (key,), key, status.model_dump_json(), expected_version)

    # --- documents --------------------------------------------------------------------------------------------

    def get_document(self, kind: str, key: str) -> tuple[dict[str, Any] | None, str]:
        """The document and its version; ``(None, NO_VERSION)`` when there is none."""
        row = self._one("SELECT version, body FROM documents WHERE kind = ? AND key = ?", (kind, key))
        if row is None:
            return None, NO_VERSION
        return self._decode(kind, key, row[1]), str(row[0])

    def put_document(self, kind: str, key: str, body: Mapping[str, Any], expected_version: str) -> str:
        """Store ``body`` if the version is still ``expected_version``; returns the new one, else ConflictError."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return self._write("documents", "kind = ? AND key = ?", (kind, key), f"{kind}:{key}", text, expected_version)

    def list_documents(self, kind: str) -> list[tuple[str, dict[str, Any], str]]:
        """Every document of ``kind`` as ``(key, body, version)``, by key."""
        with self._mutex:
            rows = self._run("SELECT key, version, body FROM documents WHERE kind = ? ORDER BY key", (kind,)).fetchall()
        return [(key, self._decode(kind, key, body), str(version)) for key, version, body in rows]

    def delete_document(self, kind: str, key: str) -> None:
        """Remove a document; idempotent."""
        with self._mutex, _transaction(self._db):
            self._run("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key))

    def close(self) -> None:
        """Close the database and release the state directory; idempotent."""
        with self._mutex:
            self._db.close()
            if self._lock is not None:
                self._lock.release()

    # --- internals --------------------------------------------------------------------------------------------

    def _write(self, table: str, where: str, ident: tuple[str, ...], key: str, body: str, expected: str) -> str:  # noqa: PLR0917
        columns = "kind, key" if table == "documents" else "key"
        with self._mutex, _transaction(self._db):
            row = self._run(f"SELECT version FROM {table} WHERE {where}", ident).fetchone()  # noqa: S608 - the table name is one of a fixed set; values are bound parameters
            actual = NO_VERSION if row is None else str(row[0])
            if actual != expected:
                raise ConflictError(key, expected, actual)
            if row is None:
                marks = ", ".join("?" * len(ident))
                self._run(f"INSERT INTO {table} ({columns}, version, body) VALUES ({marks}, 1, ?)", (*ident, body))  # noqa: S608 - the table name is one of a fixed set; values are bound parameters
                return "1"
            version = int(row[0]) + 1
            self._run(f"UPDATE {table} SET version = ?, body = ? WHERE {where}", (version, body, *ident))  # noqa: S608 - the table name is one of a fixed set; values are bound parameters
            return str(version)

    def _one(self, sql: str, params: tuple[str, ...]) -> tuple[Any, ...] | None:
        with self._mutex:
            row: tuple[Any, ...] | None = self._run(sql, params).fetchone()
            return row

    def _run(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as error:
            raise _unreadable(self.path, error) from None

    def _decode(self, kind: str, key: str, body: str) -> dict[str, Any]:
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:
            raise StateError(f"{self.path}: document {kind}/{key} is not JSON ({error})") from None
        if not isinstance(value, dict):
            raise StateError(f"{self.path}: document {kind}/{key} is not a JSON object")
        return value


def _open(path: Path) -> sqlite3.Connection:
    """Connect, check the file is a healthy database of a schema we know, and migrate it forward.

    The file is created 0600 before SQLite opens it (an empty file is an empty database); SQLite gives the
    ``-wal`` and ``-shm`` files it creates the database's mode."""
    os.close(open_private(path, os.O_RDONLY | os.O_CREAT))
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        narrow(companion)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise StateError(
                f"{path} is damaged (sqlite quick_check: {check[0] if check else 'no answer'}); "
                "move it aside and restore a backup, or delete it to start with no saved rollouts"
            )
        _migrate(db, path)
    except sqlite3.DatabaseError as error:
        db.close()
        raise _unreadable(path, error) from None
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    with _transaction(db):
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
        elif "schema_version" not in tables:
            raise StateError(
                f"{path} is a SQLite database but not headway's (no schema_version table); "
                "point --state-dir at a directory of its own"
            )
        row = db.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row is not None else None
        if not isinstance(current, int) or current < 0:
            raise StateError(f"{path} has an unreadable schema version ({current!r}); restore a backup")
        if current > SCHEMA_VERSION:
            raise StateError(
                f"{path} was written by a newer headway (schema {current}, this one knows up to {SCHEMA_VERSION}); "
                "upgrade headway, or use another --state-dir"
            )
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                db.execute(statement)
        if current != SCHEMA_VERSION:
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction taken up front (IMMEDIATE): a read-then-write cannot interleave with another write."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _unreadable(path: Path, error: sqlite3.DatabaseError) -> StateError:
    return StateError(
        f"{path} is not a readable headway database ({error}); move it aside and restore a backup, "
        "or delete it to start with no saved rollouts"
    )
