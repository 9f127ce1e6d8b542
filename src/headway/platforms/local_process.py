"""One replica's operating-system process: start it detached, recognise it again later, signal its group, probe it.

Replicas are the data plane, so they must outlive the controller: each starts in a new session
(``start_new_session``), which makes it the leader of its own process group and keeps a ``kill -9`` of Headway
(or a Ctrl-C in its terminal) from reaching it. Signals go to the whole group so that a shell wrapper's children
stop too, and nothing is left behind.

A restarted Headway adopts the replicas it finds alive. A PID alone is not an identity (PIDs are reused), so a
process is ours only if its kernel start time (``/proc/<pid>/stat`` field 22) and its command line match what was
recorded when it was started.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from headway.platforms.local_spec import Probe
from headway.private_files import append_private, private_dir

HOST = "127.0.0.1"


class ReplicaProcess:
    """A started or adopted replica process; its PID is also its process group id."""

    def __init__(self, pid: int, start_ticks: str | None, argv: Sequence[str], popen: subprocess.Popen[bytes] | None):
        self.pid = pid
        self.start_ticks = start_ticks
        self.argv = list(argv)
        self._popen = popen
        self.returncode: int | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log: Path) -> ReplicaProcess:
        """Start ``argv`` in its own session with output appended to ``log``; OSError if it cannot start."""
        private_dir(log.parent)  # a replica's output may echo its env values: the owner's only
        with append_private(log) as out:
            out.write(f"--- headway: starting {list(argv)} (PORT={env.get('PORT')})\n".encode())
            out.flush()
            popen = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        return cls(popen.pid, start_ticks(popen.pid), argv, popen)

    @classmethod
    def adopt(cls, pid: int, recorded_ticks: str | None, argv: Sequence[str]) -> ReplicaProcess | None:
        """The process ``pid`` if it is still the one recorded (same start time and command line), else None."""
        ticks = start_ticks(pid)
        if ticks is None or ticks != recorded_ticks or _is_zombie(pid) or command_line(pid) != list(argv):
            return None
        return cls(pid, ticks, argv, None)

    def alive(self) -> bool:
        """Whether the replica still runs; records ``returncode`` (-1 when unknown, for adopted ones) once it ended."""
        if self.returncode is not None:
            return False
        if self._popen is not None:
            code = self._popen.poll()
            if code is not None:
                self.returncode = code
                return False
            return True
        if start_ticks(self.pid) != self.start_ticks or _is_zombie(self.pid):
            self.returncode = -1
            return False
        return True

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the replica's process group; a group that is gone is not an error."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def group_alive(self) -> bool:
        """Whether any process of the group (the replica or something it started) remains."""
        self.alive()
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return _group_has_live_member(self.pid)


def start_ticks(pid: int) -> str | None:
    """The kernel start time of ``pid`` in clock ticks, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def command_line(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _group_has_live_member(pgid: int) -> bool:
    """A group whose members are all zombies is gone for our purposes (their parent reaps them)."""
    try:
        entries = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return True
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def free_port(taken: set[int]) -> int:
    """A port on 127.0.0.1 the kernel just handed out and no other replica of ours uses."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port
    raise OSError("no free port on 127.0.0.1")


def run_probe(probe: Probe, port: int, env: Mapping[str, str], cwd: str | None) -> bool:
    """One readiness check against the replica on ``port``; blocking, bounded by the probe's timeout."""
    try:
        if probe.kind == "http":
            connection = http.client.HTTPConnection(HOST, port, timeout=probe.timeout)
            try:
                connection.request("GET", probe.path, headers=dict(probe.headers))
                status = connection.getresponse().status
            finally:
                connection.close()
            return 200 <= status < 400
        if probe.kind == "tcp":
            with socket.create_connection((HOST, port), timeout=probe.timeout):
                return True
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            list(probe.command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=probe.timeout,
            check=False,
        )
        return result.returncode == 0
    except (OSError, subprocess.SubprocessError, http.client.HTTPException):
        return False
