"""A real Git repository served by ``git daemon`` on 127.0.0.1, and a working clone to commit and push from."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Headway Tests",
    "GIT_AUTHOR_EMAIL": "tests@headway.invalid",
    "GIT_COMMITTER_NAME": "Headway Tests",
    "GIT_COMMITTER_EMAIL": "tests@headway.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=GIT_ENV | {"PATH": "/usr/bin:/bin"},
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


@dataclass
class Served:
    """The bare repository, its ``git://`` URL, and a clone whose commits `push` publishes."""

    bare: Path
    url: str
    work: Path

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Write (or, for None, delete) files, commit, push; returns the new commit id."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def revert(self, message: str = "") -> str:
        git("revert", "--no-edit", "HEAD", cwd=self.work)
        git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def force_reset(self, ref: str) -> str:
        """Rewrite history: the branch goes back to ``ref``, force-pushed."""
        git("reset", "-q", "--hard", ref, cwd=self.work)
        git("push", "-q", "--force", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@contextlib.contextmanager
def served_repository(root: Path) -> Iterator[Served]:
    """A bare repository ``site.git`` under ``root``, served read-only by a real ``git daemon``."""
    bare = root / "served" / "site.git"
    bare.mkdir(parents=True)
    git("init", "-q", "--bare", cwd=bare)
    work = root / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={bare.parent}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(bare.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=GIT_ENV | {"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError("git daemon did not start")
            time.sleep(0.05)
        yield Served(bare=bare, url=f"git://127.0.0.1:{port}/site.git", work=work)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
