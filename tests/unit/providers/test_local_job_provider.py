"""The embedded job provider runs a Job-shaped metric's command as real processes (``sh -c``)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.job import JobSpecError, LocalJobProvider, local_command
from headway.spec.analysis import Metric

CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC))


def job_spec(script: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "check", "image": "busybox", "command": ["sh", "-c", script], **spec.pop("container", {})}
    return {"backoffLimit": 0, **spec, "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}}


def metric(script: str, **spec: Any) -> Metric:
    return Metric.model_validate({"name": "job", "provider": {"job": {"spec": job_spec(script, **spec)}}})


async def finish(provider: LocalJobProvider, job: Metric, timeout: float = 20.0) -> ProviderResult:
    result = await provider.start(job, CONTEXT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while result.pending is not None:
        assert loop.time() < deadline, "the job did not finish in time"
        await asyncio.sleep(0.02)
        result = await provider.poll(job, result.pending, CONTEXT)
    return result


@pytest.mark.asyncio
async def test_start_is_pending_and_exit_zero_is_value_one() -> None:
    provider = LocalJobProvider()
    job = metric("echo checked; exit 0")

    first = await provider.start(job, CONTEXT)
    assert first.pending is not None
    result = first
    while result.pending is not None:
        await asyncio.sleep(0.02)
        result = await provider.poll(job, first.pending, CONTEXT)

    assert result.value == 1
    assert result.error is None
    assert result.metadata["exitCode"] == "0"
    assert result.metadata["stdout"] == "checked"
    assert await provider.poll(job, first.pending, CONTEXT) == result  # asking again gives the same answer


@pytest.mark.asyncio
async def test_a_failing_command_is_an_error_with_the_stderr_tail() -> None:
    result = await finish(LocalJobProvider(), metric("echo 'smoke test: 3 of 10 failed' >&2; exit 3"))

    assert result.value is None
    assert result.error == "job failed: exit code 3 after 1 attempt(s): smoke test: 3 of 10 failed"
    assert result.metadata["phase"] == "Failed"


@pytest.mark.asyncio
async def test_stderr_is_cut_to_its_tail() -> None:
    result = await finish(LocalJobProvider(), metric("head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1"))

    assert result.error is not None
    assert result.error.endswith("xEND")
    assert len(result.error) < 2200


@pytest.mark.asyncio
async def test_backoff_limit_retries_until_success(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    script = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"

    result = await finish(LocalJobProvider(), metric(script, backoffLimit=4))

    assert result.value == 1
    assert result.metadata["attempts"] == "3"


@pytest.mark.asyncio
async def test_env_and_working_dir_come_from_the_container(tmp_path: Path) -> None:
    container = {"env": [{"name": "TARGET", "value": "canary"}], "workingDir": str(tmp_path)}

    result = await finish(LocalJobProvider(), metric('echo "$TARGET in $(pwd)"', container=container))

    assert result.metadata["stdout"] == f"canary in {tmp_path}"


@pytest.mark.asyncio
async def test_active_deadline_kills_the_job() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()

    result = await finish(LocalJobProvider(), metric("sleep 30", activeDeadlineSeconds=1))

    assert result.error is not None
    assert "activeDeadlineSeconds (1s)" in result.error
    assert loop.time() - began < 10


@pytest.mark.asyncio
async def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    provider = LocalJobProvider(grace_period=1.0)
    job = metric(f"sleep 60 & echo $! > {pids}; wait")
    started = await provider.start(job, CONTEXT)
    assert started.pending is not None
    child = await _read_pid(pids)

    await provider.cancel(job, started.pending)
    await provider.cancel(job, started.pending)

    assert await _gone(child)
    after = await provider.poll(job, started.pending, CONTEXT)
    assert after.error is not None
    assert "unknown handle" in after.error


@pytest.mark.asyncio
async def test_cancel_right_after_start_stops_the_job_quickly(tmp_path: Path) -> None:
    marker = tmp_path / "ran-too-long"
    provider = LocalJobProvider(grace_period=1.0)
    job = metric(f"sleep 3 & wait; touch {marker}")
    loop = asyncio.get_running_loop()
    began = loop.time()

    started = await provider.start(job, CONTEXT)
    assert started.pending is not None
    await provider.cancel(job, started.pending)

    assert loop.time() - began < 2.5
    await asyncio.sleep(0.2)
    assert not marker.exists()


@pytest.mark.asyncio
async def test_a_background_child_does_not_hold_the_result(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    loop = asyncio.get_running_loop()
    began = loop.time()

    result = await finish(LocalJobProvider(), metric(f"sleep 30 & echo $! > {pids}; echo started"))

    assert result.value == 1
    assert loop.time() - began < 10
    assert await _gone(await _read_pid(pids))  # the leftover died with the job, as in a pod


@pytest.mark.asyncio
async def test_a_command_that_cannot_start_is_an_error() -> None:
    spec = job_spec("")
    spec["template"]["spec"]["containers"][0]["command"] = ["/nonexistent/headway-check"]
    job = Metric.model_validate({"name": "job", "provider": {"job": {"spec": spec}}})

    result = await finish(LocalJobProvider(), job)

    assert result.error is not None
    assert "cannot start" in result.error


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda s: s["template"]["spec"].pop("containers"), "containers", id="no-containers"),
        pytest.param(lambda s: s["template"]["spec"]["containers"][0].pop("command"), "command", id="no-command"),
        pytest.param(
            lambda s: s["template"]["spec"]["containers"].append({"name": "b"}), "exactly one", id="two-containers"
        ),
        pytest.param(
            lambda s: s["template"]["spec"]["containers"][0].update(env=[{"name": "A", "valueFrom": {}}]),
            "env[0].valueFrom",
            id="env-value-from",
        ),
        pytest.param(lambda s: s.update(activeDeadlineSeconds="soon"), "activeDeadlineSeconds", id="deadline"),
        pytest.param(lambda s: s.update(backoffLimit=-1), "backoffLimit", id="backoff"),
        pytest.param(lambda s: s.pop("template"), "job.spec.template", id="no-template"),
    ],
)
@pytest.mark.asyncio
async def test_specs_that_cannot_run_locally_name_the_field(change: Any, field: str) -> None:
    spec = job_spec("true")
    change(spec)
    with pytest.raises(JobSpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        local_command(spec)
    job = Metric.model_validate({"name": "job", "provider": {"job": {"spec": spec}}})

    result = await LocalJobProvider().start(job, CONTEXT)

    assert result.error is not None
    assert field in result.error


def test_command_and_args_make_the_argv_and_backoff_defaults_to_kubernetes() -> None:
    spec = job_spec("true")
    spec.pop("backoffLimit")
    spec["template"]["spec"]["containers"][0].update(command=["check"], args=["--target", "canary", 3])
    spec["template"]["spec"]["activeDeadlineSeconds"] = 20
    spec["activeDeadlineSeconds"] = 30

    command = local_command(spec)

    assert command.argv == ("check", "--target", "canary", "3")
    assert command.backoff_limit == 6
    assert command.deadline == 20


async def _read_pid(path: Path) -> int:
    for _ in range(500):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        await asyncio.sleep(0.01)
    raise AssertionError("the job never wrote its child's pid")


async def _gone(pid: int) -> bool:
    """Whether `pid` has died (a zombie waiting for an absent reaper counts as dead)."""
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(500):
        try:
            os.kill(pid, 0)
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        await asyncio.sleep(0.01)
    return False
