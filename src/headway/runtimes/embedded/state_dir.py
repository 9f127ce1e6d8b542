"""Embedded mode's state directory across lives of the daemon: what a previous instance left running, and
cleaning it up.

The data plane (replicas, proxies) outlives the controlling process on purpose, so a start must check that the
database still knows of everything that runs (`lost_state`: a fresh start over running rollouts would deploy
at full weight), ``--reset`` stops what runs and moves the database aside (`reset`), and ``headway down`` or
`teardown` stop everything and drop the rollout state (`forget`). The notification config is read from here too
(`notify_config`).
"""

from __future__ import annotations

import time
from pathlib import Path

from headway.engine.notify import NotifyConfig
from headway.platforms.local import LocalPlatform
from headway.platforms.local_state import STATE_FILE as PLATFORM_FILE
from headway.platforms.local_state import running_replicas
from headway.runtimes.embedded.proxies import Proxies, is_proxy
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, GIT_STATE_FILE, TOKEN_FILE
from headway.stores.sqlite import DB_NAME, SqliteStore, StateLock


def still_running(state_dir: Path | str) -> dict[str, str]:
    """What a previous instance left running in ``state_dir``, by rollout key: its proxy and replica PIDs, as text.

    Read from the files the data plane is known by (proxy endpoint files, ``platform.json``); a PID counts only
    if it is still the recorded process. PermanentError when ``platform.json`` cannot be read.
    """
    path = Path(state_dir)
    replicas = running_replicas(path / PLATFORM_FILE)
    proxies = {key: p for key, p in Proxies(path).known().items() if is_proxy(p.pid)}
    found: dict[str, str] = {}
    for key in sorted({*replicas, *proxies}):
        parts = []
        if key in proxies:
            parts.append(f"proxy PID {proxies[key].pid} serving {proxies[key].listen}")
        if key in replicas:
            pids = ", ".join(str(pid) for pid in sorted(replicas[key]))
            parts.append(f"{len(replicas[key])} replica{'s' if len(replicas[key]) != 1 else ''} (PID {pids})")
        found[key] = " and ".join(parts)
    return found


def lost_state(state_dir: Path | str) -> str | None:
    """Why starting on ``state_dir`` would lose track of running processes (the message to show), else None.

    The database is missing, empty, or lacks rollouts whose proxy or replicas still run: the records were lost
    (deleted, truncated, replaced) while the data plane kept serving. StateError for a database that cannot be
    read (with its path), StateLockedError while another instance holds the directory.
    """
    path = Path(state_dir).resolve()
    running = still_running(path)
    if not running:
        return None
    db = path / DB_NAME
    stored: set[str] = set()
    if not db.exists():
        why = "it is missing"
    else:
        why = "it is empty" if db.stat().st_size == 0 else "it has no record of them"
        store = SqliteStore(path)  # even when empty: what a leftover write-ahead log holds counts
        try:
            stored = {key for key, _, _ in store.list_documents("Rollout")}
        finally:
            store.close()
    lost = {key: what for key, what in running.items() if key not in stored}
    if not lost:
        return None
    listed = "; ".join(f"{key}: {what}" for key, what in lost.items())
    return (
        f"{db}: {why}, but rollouts of this state directory still run ({listed}). Starting as if nothing ran "
        "would redeploy over them at full weight, so headway will not.\n"
        "  headway up --adopt [-f FILE]  keep them serving; each rollout's serving revision becomes its stable "
        "one, so the next apply rolls out through its steps\n"
        "  headway up --reset            stop them and start afresh (a database is moved aside, not deleted)"
    )


def reset(state_dir: Path | str) -> None:
    """``--reset``: stop every replica and proxy ``state_dir`` knows of and start afresh.

    Unlike `teardown` it does not open the database, which may be what is broken: a non-empty one is renamed
    ``headway.db.reset-<time>`` (moved aside, never deleted). StateLockedError while an instance holds the
    directory.
    """
    path = Path(state_dir).resolve()
    lock = StateLock(path)
    try:
        LocalPlatform(path).close()
        Proxies(path).stop_all()
        db = path / DB_NAME
        if db.exists() and db.stat().st_size > 0:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                part = path / (DB_NAME + suffix)
                if part.exists():
                    part.replace(path / f"{DB_NAME}.reset-{stamp}{suffix}")
        (path / ENDPOINT_FILE).unlink(missing_ok=True)
    finally:
        lock.release()
    forget(path)


def teardown(state_dir: Path | str) -> None:
    """Stop every replica and proxy a (dead) daemon left in ``state_dir``; StateLockedError if one is alive."""
    path = Path(state_dir).resolve()
    store = SqliteStore(path)
    try:
        LocalPlatform(path).close()
        Proxies(path).stop_all()
        (path / ENDPOINT_FILE).unlink(missing_ok=True)
    finally:
        store.close()
    forget(path)


STATE_FILES = (
    "headway.db",
    "headway.db-wal",
    "headway.db-shm",
    "platform.json",
    TOKEN_FILE,
    ENDPOINT_FILE,
    GIT_STATE_FILE,  # the commit last applied dies with the rollouts it made: the next start applies it again
)


def forget(state_dir: Path) -> None:
    """After everything stopped: drop the rollout state, keep the logs.

    Nothing runs any more, so a status saying "v2 is stable at 2 replicas" would describe a world that is gone;
    the next `headway up -f FILE` deploys FILE afresh, like a first start. (A crash, by contrast, keeps the
    state: the processes it describes are still running.)
    """
    for name in STATE_FILES:
        (state_dir / name).unlink(missing_ok=True)
    for path in (state_dir / "proxies").glob("*.json"):
        path.unlink(missing_ok=True)


NOTIFY_FILE = "notify.yaml"
"""Notification config read at start when ``--notify`` is not given: ``<state_dir>/notify.yaml``."""


def notify_config(state_dir: Path, file: Path | None) -> NotifyConfig | None:
    """The notification config: ``file``, else ``<state_dir>/notify.yaml`` when present, else none.

    A bad file stops the start with the field named (NotifyConfigError, a ValueError): silently not notifying
    would be found out only when someone missed an alert."""
    chosen = file if file is not None else state_dir / NOTIFY_FILE
    if file is None and not chosen.exists():
        return None
    return NotifyConfig.load(chosen)
