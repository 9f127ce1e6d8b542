"""Files and directories only their owner may read: the state directory and what Headway writes into it.

The embedded state directory holds the API token, the daemon's endpoint, the SQLite database (applied specs, env
values included) and logs that may echo those values. On a shared machine none of it is anyone else's business,
so the directory is created 0700 and every file 0600, *created* that way (``mkdir``/``open`` with the mode), never
widened first and narrowed by a ``chmod`` afterwards, which would leave a window in which another user opens it.
A directory or file left wider by an older Headway is narrowed when it is opened again.

A top-level module because every layer that writes state uses it: the store (database, lock), the platform
(replica logs), the runtime (endpoint, proxy logs) and the CLI (the daemon's log).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p path`` with every directory it creates 0700; an existing ``path`` of ours is narrowed to 0700.

    Existing parents are left as they are (they may be the user's home or a project directory)."""
    missing = [directory for directory in (path, *path.parents) if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
    _narrow(path, DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """``os.open`` creating the file 0600 (an existing one of ours is narrowed); the caller owns the descriptor."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_private(path: Path) -> BinaryIO:
    """A log file opened for appending in binary, created 0600."""
    return os.fdopen(open_private(path), "ab")


def write_private_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (0600): readers see the old file or the new one, never a half-written one."""
    partial = path.with_name(path.name + ".partial")
    with os.fdopen(open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", encoding="utf-8") as file:
        file.write(text)
    partial.replace(path)


def narrow(path: Path) -> None:
    """Narrow an existing file of ours to 0600 (one an older Headway, or SQLite from such a file, left wider)."""
    _narrow(path, FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
        path.chmod(mode)
