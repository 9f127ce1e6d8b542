"""The job provider of the embedded mode: a Job-shaped metric runs as a local process; exit 0 is success.

Manifests keep the Kubernetes batch/v1 Job shape Argo uses, so the same template works in a cluster (where the
Kubernetes runtime registers its Job-based provider under ``job`` instead) and on one machine. Read from the
Job spec:

- ``template.spec.containers[0].command`` + ``args``: the argv, executed directly as in a container (no
  shell unless the command is one, e.g. ``["sh", "-c", "..."]``). There is no image entrypoint locally, so a
  command is required;
- ``containers[0].env`` (``name``/``value`` pairs, added to this process's environment) and ``workingDir``;
- ``activeDeadlineSeconds`` (of the Job or the pod, the smaller wins): the whole job, retries included, is
  killed when it runs out;
- ``backoffLimit`` (Kubernetes' default 6): how many times a failed process is retried before the job fails.

`start` launches the process in its own process group and answers ``pending`` with a handle; `poll` answers
pending until it ends. Exit 0 gives the value 1; a failure, a deadline or a command that cannot start is an
error result with the exit code and the tail of stderr (metadata ``phase: Failed`` marks a job that ran and
failed, which Argo counts as a Failed measurement rather than an Error). `cancel` sends SIGTERM to the group,
SIGKILL after a grace period, and is idempotent. Handles live in this process: after a restart a poll on an
old handle is an error result, which the analysis counts like any failed query.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric

DEFAULT_BACKOFF_LIMIT = 6
"""Kubernetes' default number of retries of a failed Job pod."""

TAIL_BYTES = 2048
"""How much of the end of stdout and stderr is kept for the measurement."""

_CONTAINER = "job.spec.template.spec.containers[0]"


class JobSpecError(ValueError):
    """A Job spec that cannot run locally; the message names the field."""


@dataclass(frozen=True)
class LocalCommand:
    """What to run for one job metric, read from its Job spec."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    deadline: float | None = None
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT


def local_command(spec: Mapping[str, Any]) -> LocalCommand:
    """Read the argv, environment, deadline and retries from a batch/v1 JobSpec; JobSpecError names the field."""
    template = _mapping(spec.get("template"), "job.spec.template")
    pod = _mapping(template.get("spec"), "job.spec.template.spec")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise JobSpecError("job.spec.template.spec.containers must list one container")
    if len(containers) > 1:
        raise JobSpecError("job.spec.template.spec.containers: the embedded mode runs exactly one container")
    container = _mapping(containers[0], _CONTAINER)
    command = _strings(container.get("command"), f"{_CONTAINER}.command")
    if not command:
        raise JobSpecError(f"{_CONTAINER}.command is required in embedded mode (there is no image entrypoint)")
    args = _strings(container.get("args"), f"{_CONTAINER}.args")
    env: dict[str, str] = {}
    for index, entry in enumerate(container.get("env") or []):
        where = f"{_CONTAINER}.env[{index}]"
        item = _mapping(entry, where)
        if "valueFrom" in item:
            raise JobSpecError(f"{where}.valueFrom is not supported in embedded mode (use value)")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise JobSpecError(f"{where}.name must be a non-empty string")
        env[name] = str(item.get("value", ""))
    working_dir = container.get("workingDir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise JobSpecError(f"{_CONTAINER}.workingDir must be a string")
    deadlines = [
        _seconds(spec.get("activeDeadlineSeconds"), "job.spec.activeDeadlineSeconds"),
        _seconds(pod.get("activeDeadlineSeconds"), "job.spec.template.spec.activeDeadlineSeconds"),
    ]
    set_deadlines = [deadline for deadline in deadlines if deadline is not None]
    backoff = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    if isinstance(backoff, bool) or not isinstance(backoff, int) or backoff < 0:
        raise JobSpecError(f"job.spec.backoffLimit: {backoff!r} is not a non-negative integer")
    return LocalCommand(
        argv=(*command, *args),
        env=env,
        working_dir=working_dir,
        deadline=min(set_deadlines) if set_deadlines else None,
        backoff_limit=backoff,
    )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise JobSpecError(f"{where} must be an object")
    return value


def _strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str | int | float) for item in value):
        raise JobSpecError(f"{where} must be a list of strings")
    return [str(item) for item in value]


def _seconds(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise JobSpecError(f"{where}: {value!r} is not a positive number of seconds")
    return float(value)


@dataclass
class _Execution:
    """One running job: the task that drives it, the process of the current attempt, and whether to stop."""

    task: asyncio.Task[ProviderResult] | None = None
    process: asyncio.subprocess.Process | None = None
    cancelled: bool = False


class LocalJobProvider:
    """Runs a job metric's command as a local process group; measurements are pending until it exits.

    Output goes to temporary files, not pipes: on Python 3.11 ``Process.wait()`` also waits for the pipes to
    close, so a background child that inherited them would hold the measurement (and a cancel) hostage.
    """

    type: ClassVar[str] = "job"

    def __init__(self, *, grace_period: float = 2.0, keep_finished: int = 256) -> None:
        self.grace_period = grace_period
        self.keep_finished = keep_finished
        self._running: dict[str, _Execution] = {}
        self._finished: OrderedDict[str, ProviderResult] = OrderedDict()

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        """Launch the command and answer pending with its handle (or an error if the spec cannot run)."""
        spec = metric.provider.job
        if spec is None:
            return ProviderResult(error=f"metric {metric.name!r} has no job provider block")
        try:
            command = local_command(spec.spec)
        except JobSpecError as error:
            return ProviderResult(error=str(error))
        handle = f"job-{metric.name}-{uuid.uuid4().hex[:12]}"
        execution = _Execution()
        execution.task = asyncio.create_task(self._run(command, execution), name=handle)
        self._running[handle] = execution
        return ProviderResult(pending=handle, metadata={"job": handle})

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        """Pending while the process runs; then its result (asking again returns the same result)."""
        finished = self._finished.get(pending)
        if finished is not None:
            return finished
        execution = self._running.get(pending)
        if execution is None or execution.task is None:
            return ProviderResult(error=f"job: unknown handle {pending!r} (finished long ago, or started elsewhere)")
        if not execution.task.done():
            return ProviderResult(pending=pending, metadata={"job": pending})
        del self._running[pending]
        result = execution.task.result()
        self._finished[pending] = result
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)
        return result

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Stop the job: SIGTERM to its process group, SIGKILL after the grace period; idempotent."""
        self._finished.pop(pending, None)
        execution = self._running.pop(pending, None)
        if execution is None or execution.task is None:
            return
        execution.cancelled = True
        process = execution.process
        if process is not None and process.returncode is None:
            await self._stop(process)
        # The task ends by itself now: it sees the flag before another attempt, or right after a spawn that
        # raced with this call. Cancelling it instead could interrupt asyncio inside the spawn.
        await asyncio.wait([execution.task])

    async def _run(self, command: LocalCommand, execution: _Execution) -> ProviderResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + command.deadline if command.deadline is not None else None
        attempts = command.backoff_limit + 1
        for attempt in range(1, attempts + 1):
            if execution.cancelled:
                break
            with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
                try:
                    process = await asyncio.create_subprocess_exec(
                        *command.argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=stdout,
                        stderr=stderr,
                        env={**os.environ, **command.env},
                        cwd=command.working_dir,
                        start_new_session=True,
                    )
                except OSError as error:
                    return ProviderResult(error=f"job command {command.argv[0]!r} cannot start: {error}")
                execution.process = process
                try:
                    if execution.cancelled:
                        await self._stop(process)
                    exit_code = await self._wait(process, deadline)
                finally:
                    _kill_group(process.pid, signal.SIGKILL)  # leftovers of the group die with the job, as in a pod
                out, err = _tail(stdout), _tail(stderr)
            metadata = {"exitCode": str(exit_code), "attempts": str(attempt)}
            if out:
                metadata["stdout"] = out
            if exit_code == 0:
                return ProviderResult(value=1, metadata=metadata)
            if exit_code is None:
                return ProviderResult(
                    error=f"job exceeded activeDeadlineSeconds ({command.deadline:g}s) and was killed"
                    + (f": {err}" if err else ""),
                    metadata={**metadata, "exitCode": "killed", "phase": "Failed"},
                )
            if attempt == attempts and not execution.cancelled:
                detail = f": {err}" if err else " (no stderr)"
                return ProviderResult(
                    error=f"job failed: exit code {exit_code} after {attempt} attempt(s){detail}",
                    metadata={**metadata, "phase": "Failed"},
                )
        return ProviderResult(error="job was cancelled")

    async def _wait(self, process: asyncio.subprocess.Process, deadline: float | None) -> int | None:
        """The exit code of one attempt; None when the deadline killed it."""
        remaining = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            return await asyncio.wait_for(process.wait(), remaining)
        except TimeoutError:
            await self._stop(process)
            return None

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the group, then SIGKILL it if the process outlives the grace period."""
        _kill_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), self.grace_period)
        except TimeoutError:
            _kill_group(process.pid, signal.SIGKILL)
            await process.wait()


def _kill_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _tail(output: IO[bytes]) -> str:
    """The last `TAIL_BYTES` of a finished process's output file."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - TAIL_BYTES, 0))
    return output.read().decode("utf-8", "replace").strip()
