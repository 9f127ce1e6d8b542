"""Hostile files and options get a clear error from every entry point, in bounded time and memory (issue #11).

Each case was a hang, gigabytes or a traceback before. The real-process cases run the CLI in a subprocess under
an address-space limit and measure its CPU time and peak RSS with ``wait4``: CPU time rather than wall time,
since the machine is shared and a busy neighbour must not fail the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from headway.cli.main import main
from headway.engine.notify import NotifyConfig, NotifyConfigError
from headway.runtimes.embedded.daemon import Daemon
from headway.spec.load import SpecError
from tests.unit.runtimes.embedded.world import MANIFEST, World
from tests.unit.spec.manifests import canary, dump, rollout
from tests.unit.spec.test_hostile_yaml import alias_bomb

ROOT = Path(__file__).resolve().parents[3]
MB = 1024 * 1024
SAFETY_NET = 768 * MB
"""Address-space limit of each subprocess: a regression fails with MemoryError instead of taking the machine."""
LIMITED = (
    "import atexit, resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({SAFETY_NET}, {SAFETY_NET})); "
    "report = sys.argv.pop(1); "
    "atexit.register(lambda: open(report, 'w').write("
    "next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')))); "
    "sys.argv[0] = 'headway'; "
    "runpy.run_module('headway.cli.main', run_name='__main__')"
)
"""`python -m headway.cli.main` under the address-space limit (set in the child, before anything is read),
reporting its peak RSS (VmHWM) at exit. Not ``ru_maxrss`` from ``wait4``: Linux keeps in it the RSS the child
had before ``exec``, which is the test process's own."""


@dataclass(frozen=True)
class Measured:
    code: int
    stdout: str
    stderr: str
    cpu_seconds: float
    peak_mb: float


def measured(*args: str, stdin: Path | None = None, cwd: Path = ROOT, timeout: float = 120) -> Measured:
    """`headway ARGS` in a real process: exit code, output, CPU seconds and peak RSS."""
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        report = Path(scratch) / "peak"
        source = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", LIMITED, str(report), *args], stdin=source, stdout=out, stderr=err, cwd=cwd
            )
        finally:
            if stdin is not None:
                source.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise AssertionError(f"headway {' '.join(args)} still running after {timeout} s")
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
            int(report.read_text().split()[1]) / 1024,
        )


def assert_clear_failure(result: Measured) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.cpu_seconds < 2.0, f"{result.cpu_seconds:.2f} s of CPU"
    assert result.peak_mb < 256, f"{result.peak_mb:.0f} MB"


def run(*args: str, stdin: str | bytes | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- real processes -----------------------------------------------------------------------------------------------


def test_lint_of_an_alias_bomb_ends_in_bounded_time_and_memory(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    result = measured("lint", "bomb.yaml", cwd=tmp_path)
    assert_clear_failure(result)
    assert result.stdout.startswith("bomb.yaml: more than 50000 YAML nodes")
    assert "HEADWAY_MAX_MANIFEST_NODES" in result.stdout


def test_a_big_file_and_many_documents_are_refused_before_they_are_parsed(tmp_path: Path) -> None:
    keys = "".join(f"    k{i:06d}: v{i:05d}\n" for i in range(300_000))
    (tmp_path / "keys.yaml").write_text(dump(rollout()).replace("metadata:\n", "metadata:\n  labels:\n" + keys, 1))
    (tmp_path / "docs.yaml").write_text("---\n" * 500_000)
    for name in ("keys.yaml", "docs.yaml"):
        result = measured("lint", name, cwd=tmp_path)
        assert_clear_failure(result)
        assert "over the limit (bytes = 1048576; set HEADWAY_MAX_MANIFEST_BYTES" in result.stdout


def test_the_limit_can_be_raised_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = rollout()
    manifest["metadata"]["labels"] = {f"k{i}": "v" for i in range(30_000)}
    (tmp_path / "big.yaml").write_text(dump(manifest))
    assert "more than 50000 YAML nodes" in measured("lint", "big.yaml", cwd=tmp_path).stdout
    monkeypatch.setenv("HEADWAY_MAX_MANIFEST_NODES", "100000")
    assert measured("lint", "big.yaml", cwd=tmp_path).code == 0
    monkeypatch.setenv("HEADWAY_MAX_MANIFEST_NODES", "many")
    result = measured("lint", "big.yaml", cwd=tmp_path)
    assert result.stdout == "big.yaml: HEADWAY_MAX_MANIFEST_NODES=many: expected a positive integer\n"


def test_standard_input_is_capped_too() -> None:
    result = measured("lint", "-", stdin=Path("/dev/zero"))
    assert_clear_failure(result)
    assert result.stdout == (
        "<stdin>: more than 1048576 bytes: over the limit "
        "(bytes = 1048576; set HEADWAY_MAX_MANIFEST_BYTES to raise it if this input is genuine)\n"
    )


def test_a_fifo_and_a_device_are_refused_without_reading_them(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    result = measured("lint", "pipe.yaml", "/dev/zero", cwd=tmp_path, timeout=30)
    assert_clear_failure(result)
    assert result.stdout.splitlines() == [
        "pipe.yaml: not a regular file (a fifo)",
        "/dev/zero: not a regular file (a device)",
    ]


# --- in process ----------------------------------------------------------------------------------------------------


def test_a_symlink_loop_is_a_problem_not_a_runtime_error(workdir: Path) -> None:
    (workdir / "a.yaml").symlink_to("b.yaml")
    (workdir / "b.yaml").symlink_to("a.yaml")
    code, output = run("lint", "a.yaml")
    assert code == 1
    assert output.splitlines()[0] == "a.yaml: too many levels of symbolic links"


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        pytest.param(b"apiVersion: v1\x00\n", "<stdin>: invalid YAML at line 1, column 15: character U+0000", id="nul"),
        pytest.param(b"a: 1\nb: \x07\n", "<stdin>: invalid YAML at line 2, column 4: character U+0007", id="bell"),
        pytest.param(b"a: \xff\n", "<stdin>: not UTF-8 text (byte 3)", id="not-utf8"),
        pytest.param(b"a: " + b"[" * 600 + b"]" * 600, "<stdin>: nesting deeper than 64 levels at line 1", id="deep"),
        pytest.param(
            b"apiVersion: argoproj.io/v1alpha1\nkind: [Rollout]\n",
            "<stdin>: document 1: kind: expected a string, got a list",
            id="kind-list",
        ),
    ],
)
def test_bad_standard_input_is_a_located_problem(stdin: bytes, expected: str) -> None:
    code, output = run("lint", "-", stdin=stdin)
    assert code == 1
    assert output.startswith(expected), output


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-inf"])
def test_simulate_refuses_auto_promote_times_it_cannot_count(value: str) -> None:
    code, output = run("simulate", str(ROOT / "examples/canary-basic.yaml"), "--auto-promote", value)
    assert code == 2
    assert "Invalid value for '--auto-promote'" in output
    assert "Traceback" not in output


def test_simulate_refuses_a_time_limit_it_cannot_count() -> None:
    code, output = run("simulate", str(ROOT / "examples/canary-basic.yaml"), "--time-limit", "inf")
    assert code == 2
    assert "--time-limit': inf is not a number of seconds in 0..604800" in output


def test_simulate_refuses_more_pods_than_it_models_instead_of_hanging(workdir: Path) -> None:
    manifest = canary(steps=[{"setWeight": 50}, {"pause": {"duration": 10}}])
    manifest["spec"]["replicas"] = 1_000_000_000
    (workdir / "huge.yaml").write_text(dump(manifest))
    code, output = run("simulate", "huge.yaml")
    assert code == 1
    assert output == "huge.yaml: spec.replicas: 1000000000 is more pods than simulate models (at most 1000)\n"


def test_simulate_of_an_alias_bomb_is_a_clear_error(workdir: Path) -> None:
    (workdir / "bomb.yaml").write_text(alias_bomb())
    code, output = run("simulate", "bomb.yaml")
    assert code == 1
    assert output.startswith("bomb.yaml: more than 50000 YAML nodes")


def test_the_daemons_apply_refuses_a_bomb_quickly_and_stores_nothing() -> None:
    """`/api/v1/apply` calls `Runner.apply_text` on the daemon's event loop: before, a 472-byte bomb left
    ``/healthz`` unanswered for 10 s at 1 GB."""
    world = World()
    start = time.process_time()
    with pytest.raises(SpecError) as raised:
        world.runner.apply_text(alias_bomb(), "bomb.yaml")
    assert time.process_time() - start < 1.0
    [problem] = raised.value.problems
    assert problem.render().startswith("bomb.yaml: more than 50000")
    assert world.runner.rollouts() == {}
    assert world.runner.apply_text(MANIFEST, "rollout.yaml") == ["Rollout/web"]


def test_a_notify_config_is_read_by_the_same_loader(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    with pytest.raises(NotifyConfigError, match=r"bomb\.yaml: more than 50000 YAML nodes"):
        NotifyConfig.load(tmp_path / "bomb.yaml")
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(NotifyConfigError, match=r"pipe\.yaml: cannot read: not a regular file \(a fifo\)"):
        NotifyConfig.load(tmp_path / "pipe.yaml")
    (tmp_path / "nul.yaml").write_text("sinks: []\x00")
    with pytest.raises(NotifyConfigError, match=r"nul\.yaml: not YAML: invalid YAML at line 1, column 10"):
        NotifyConfig.load(tmp_path / "nul.yaml")


@pytest.mark.asyncio
async def test_the_daemon_answers_a_bomb_with_400_and_stays_healthy() -> None:
    """Real HTTP on 127.0.0.1: the refusal comes back as the manifest's problems, and ``/healthz`` answers."""
    daemon = Daemon(World().runner, token="t")
    url = await daemon.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session:
            async with session.post(url + "/api/v1/apply?file=bomb.yaml", data=alias_bomb()) as response:
                assert response.status == 400
                body = await response.json()
            async with session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=10)) as health:
                assert health.status == 200
    finally:
        await daemon.close()
    assert body["error"] == "invalid manifest"
    [problem] = body["problems"]
    assert problem.startswith("bomb.yaml: more than 50000 YAML nodes")


def test_simulate_refuses_a_judge_it_would_measure_every_millisecond(workdir: Path) -> None:
    """Each simulated measurement is an engine pass: a 1 ms interval over 3 h of virtual time ran for hours."""
    text = (ROOT / "examples/canary-judge.yaml").read_text()
    assert "interval: 10s" in text and "count: 1000" in text
    (workdir / "judge.yaml").write_text(text.replace("interval: 10s", "interval: 1ms").replace("count: 1000", ""))
    code, output = run("simulate", "judge.yaml")
    assert code == 1
    assert output == (
        "judge.yaml: AnalysisTemplate/judge-errors: spec.metrics[0].interval: 1ms would take more than 2000 "
        "measurements in --time-limit 10800 (use a longer interval or a shorter --time-limit)\n"
    )
