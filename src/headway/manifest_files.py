"""Reading manifests and config files: regular files and standard input only, never more than the size limit.

Every entry point that reads YAML (``headway lint``, ``simulate``, ``apply``, the daemon's ``/api/v1/apply``,
the notification config, the demo) goes through this module and `headway.spec.load`, so a hostile input meets
the same limits everywhere. The spec layer does no I/O; this module is the I/O around it: it refuses what is
not a regular file (a fifo would block forever, ``/dev/zero`` would be read until memory runs out, a symlink
loop cannot be opened), reads at most one byte more than the size limit, and takes the limits from the
environment (`Limits.ENVIRONMENT`), so that a user with a genuinely large manifest can raise them.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO

from headway.spec.load import Document, Limits, Problem, load_text, load_yaml

STDIN = "-"
"""The name that means standard input."""


class ManifestFileError(OSError):
    """A file that cannot be read as a manifest; the message names the file and says why."""


def limits() -> Limits:
    """The limits in force: the defaults, raised or lowered by ``HEADWAY_MAX_MANIFEST_*`` variables.

    Raises `ManifestFileError` for a variable that is not a positive integer (an ignored typo would leave the
    user wondering why the limit did not move)."""
    try:
        return Limits.from_environment(os.environ)
    except ValueError as error:
        raise ManifestFileError(str(error)) from None


def read_bytes(path: str | Path, within: Limits | None = None) -> bytes:
    """The content of a regular file (or of standard input for ``-``), at most ``max_bytes`` long.

    Opened without blocking, then checked with ``fstat`` on the open descriptor, so a fifo or a device is
    refused before anything is read, and a file swapped for one between a check and the open cannot slip by.
    """
    within = within or limits()
    if str(path) == STDIN:
        return _read_capped(sys.stdin.buffer, within, "<stdin>")
    name = str(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ManifestFileError(f"{name}: {_reason(error)}") from None
    with os.fdopen(fd, "rb", buffering=0) as stream:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ManifestFileError(f"{name}: not a regular file ({_file_type(mode)})")
        return _read_capped(stream, within, name)


def read_text(path: str | Path, within: Limits | None = None) -> str:
    """`read_bytes` decoded as UTF-8; `ManifestFileError` naming the first byte that is not."""
    data = read_bytes(path, within)
    name = "<stdin>" if str(path) == STDIN else str(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestFileError(f"{name}: not UTF-8 text (byte {error.start})") from None


def load_manifest_text(text: str, file: str = "<input>") -> list[Document]:
    """`load_text` under the limits in force (a bad limit variable becomes the file's one problem)."""
    try:
        current = limits()
    except ManifestFileError as error:
        return [Document(file, 0, "", "", None, None, (Problem(file, "", "", "", str(error)),))]
    return load_text(text, file, current)


def load_manifest_file(path: str | Path) -> list[Document]:
    """Every document of a manifest file (``-`` for standard input), a read failure being its one problem."""
    name = "<stdin>" if str(path) == STDIN else str(path)
    try:
        text = read_text(path)
    except ManifestFileError as error:
        return [Document(name, 0, "", "", None, None, (Problem(name, "", "", "", _strip_name(error, name)),))]
    return load_manifest_text(text, name)


def load_config_file(path: str | Path) -> Any:
    """The first YAML (or JSON) document of a config file, None when it is empty; raises `ManifestFileError`
    or `headway.spec.load.SpecError` with the file, line and reason."""
    current = limits()
    documents = load_yaml(read_text(path, current), str(path), current)
    return documents[0] if documents else None


def _read_capped(stream: BinaryIO, within: Limits, name: str) -> bytes:
    cap = within.max_bytes
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        try:
            chunk = stream.read(min(1 << 20, cap + 1 - size))
        except BlockingIOError:  # pragma: no cover - only non-regular files block, and those are refused
            raise ManifestFileError(f"{name}: not a regular file") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise ManifestFileError(f"{name}: {within.exceeded('max_bytes', f'more than {cap} bytes')}")


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


def _strip_name(error: ManifestFileError, name: str) -> str:
    """The reason alone: the problem already carries the file name."""
    return str(error).removeprefix(f"{name}: ")


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"  # pragma: no cover - the kinds above are all that stat reports besides files
