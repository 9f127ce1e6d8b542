"""The local platform with real processes: readiness, crash restarts, drain order, rolling restart, clean close."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.core.actions import ServiceRole
from headway.core.errors import PermanentError
from headway.platforms.local import LocalPlatform
from tests.unit.platforms.apps import app_rollout, pid_alive, wait_until

FAST_BACKOFF = (0.05, 0.2)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(tmp_path, backoff=FAST_BACKOFF)
    yield platform
    platform.close()


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_replicas_get_their_own_ports_and_serve_their_version(platform: LocalPlatform) -> None:
    rollout = app_rollout(version="v7")
    platform.create_revision(rollout, "abc", 1, 2)

    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2, what="two ready replicas")

    backends = platform.backends(rollout, "abc")
    assert len({port for _, port in backends}) == 2
    assert [json.loads(get(port)) for _, port in backends] == [{"version": "v7"}] * 2
    log = platform.replicas(rollout, "abc")[0].log
    assert log == platform.state_dir / "logs" / "default" / "web" / "abc-0.log"
    assert f"PORT={backends[0][1]}" in log.read_text()


def test_a_replica_is_unready_until_its_probe_passes(platform: LocalPlatform) -> None:
    rollout = app_rollout(env={"READY_AFTER_SECONDS": "1.5"})
    platform.create_revision(rollout, "abc", 1, 1)

    time.sleep(0.8)
    assert platform.revisions(rollout)["abc"] == platform.revisions(rollout)["abc"].__class__(
        hash="abc", number=1, replicas=1, ready=0, available=0
    )
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 1, what="the slow starter to become ready")


def test_a_crashed_replica_restarts_on_the_same_port(platform: LocalPlatform) -> None:
    rollout = app_rollout()
    platform.create_revision(rollout, "abc", 1, 1)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 1)
    [before] = platform.replicas(rollout, "abc")
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)

    wait_until(lambda: platform.replicas(rollout, "abc")[0].restarts == 1, what="the crash to be counted")
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 1, what="the replica to come back")
    [after] = platform.replicas(rollout, "abc")
    assert (after.port, after.restarts) == (before.port, 1)
    assert after.pid != before.pid
    assert json.loads(get(after.port)) == {"version": "v1"}


def test_a_crash_looping_revision_stays_unready_and_counts_restarts(platform: LocalPlatform) -> None:
    rollout = app_rollout(env={"CRASH_AFTER_SECONDS": "0.05"})
    platform.create_revision(rollout, "bad", 1, 2)

    wait_until(lambda: min(r.restarts for r in platform.replicas(rollout, "bad")) >= 3, what="three restarts each")

    state = platform.revisions(rollout)["bad"]
    assert (state.replicas, state.ready) == (2, 0)
    assert platform.backends(rollout, "bad") == []
    assert platform.replicas(rollout, "bad")[0].log.read_text().count("--- headway: starting") >= 3


def test_a_command_that_cannot_start_is_a_crash_loop_with_the_reason_in_its_log(platform: LocalPlatform) -> None:
    rollout = app_rollout(command=["/nonexistent/server"], probe=None)
    platform.create_revision(rollout, "bad", 1, 1)

    wait_until(lambda: platform.replicas(rollout, "bad")[0].restarts >= 2, what="failed starts to be counted")

    assert platform.revisions(rollout)["bad"].ready == 0
    assert "cannot start" in platform.replicas(rollout, "bad")[0].log.read_text()


def test_scale_down_leaves_rotation_first_waits_for_in_flight_then_terminates(tmp_path: Path) -> None:
    busy = threading.Event()
    busy.set()
    events: list[str] = []
    platform = LocalPlatform(
        tmp_path,
        on_backends_changed=lambda _hash, backends: events.append(f"backends {len(backends)}"),
        in_flight=lambda _backend: 1 if busy.is_set() else 0,
    )
    try:
        rollout = app_rollout(grace=30)
        platform.create_revision(rollout, "abc", 1, 2)
        wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2)
        leaving = platform.replicas(rollout, "abc")[1]
        pid = leaving.pid
        assert pid is not None

        platform.scale_revision(rollout, "abc", 1)

        wait_until(lambda: events[-1] == "backends 1", what="the replica to leave rotation")
        time.sleep(0.5)
        assert pid_alive(pid), "terminated while a request was still in flight"
        assert platform.revisions(rollout)["abc"].replicas == 1
        busy.clear()
        wait_until(lambda: not pid_alive(pid), what="the drained replica to exit")
        assert "exited" not in events
        assert leaving.port not in [port for _, port in platform.backends(rollout, "abc")]
    finally:
        platform.close()


def test_a_replica_ignoring_sigterm_is_killed_after_the_grace_period(platform: LocalPlatform) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
    ]
    rollout = app_rollout(command=stubborn, probe=None, grace=0.6)
    platform.create_revision(rollout, "abc", 1, 1)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 1)
    pid = platform.replicas(rollout, "abc")[0].pid
    assert pid is not None
    time.sleep(0.3)  # let the interpreter install its handler

    started = time.monotonic()
    platform.delete_revision(rollout, "abc")
    wait_until(lambda: not pid_alive(pid), what="SIGKILL after the grace period")

    assert time.monotonic() - started >= 0.5
    assert "abc" not in platform.revisions(rollout)


def test_exec_and_tcp_probes_decide_readiness(platform: LocalPlatform, tmp_path: Path) -> None:
    flag = tmp_path / "ready-flag"
    exec_probe = {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 0.1, "failureThreshold": 1}
    gated = app_rollout(name="gated", probe=exec_probe)
    tcp = app_rollout(name="tcp", probe={"tcpSocket": {"port": 8080}, "periodSeconds": 0.2})
    platform.create_revision(gated, "g", 1, 1)
    platform.create_revision(tcp, "t", 1, 1)

    wait_until(lambda: platform.revisions(tcp)["t"].ready == 1, what="the tcp probe")
    assert platform.revisions(gated)["g"].ready == 0
    flag.touch()
    wait_until(lambda: platform.revisions(gated)["g"].ready == 1, what="the exec probe to pass")
    flag.unlink()
    wait_until(lambda: platform.revisions(gated)["g"].ready == 0, what="the exec probe to fail again")


def test_restart_replaces_replicas_one_at_a_time(platform: LocalPlatform) -> None:
    rollout = app_rollout()
    platform.create_revision(rollout, "abc", 1, 2)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2)
    before = {info.pid for info in platform.replicas(rollout, "abc")}

    platform.restart_revision(rollout, "abc")
    lowest_ready = 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lowest_ready = min(lowest_ready, platform.revisions(rollout)["abc"].ready)
        infos = platform.replicas(rollout, "abc")
        if len(infos) == 2 and not {info.pid for info in infos} & before and all(info.ready for info in infos):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the restart did not replace both replicas")

    assert lowest_ready == 2, "a rolling restart must not take capacity down"
    assert platform.revisions(rollout)["abc"].replicas == 2


def test_close_leaves_no_process_behind_not_even_grandchildren(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path)
    rollout = app_rollout(command=["sh", "-c", "sleep 300 & sleep 300"], probe=None, grace=1)
    platform.create_revision(rollout, "abc", 1, 2)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2)
    groups = [info.pid for info in platform.replicas(rollout, "abc") if info.pid is not None]
    wait_until(lambda: len(members(groups)) >= 4, what="shells and their sleeps")

    platform.close()

    assert members(groups) == []


def test_services_are_recorded_and_survive_a_new_instance(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path)
    rollout = app_rollout(probe=None, command=["sleep", "60"])
    platform.create_revision(rollout, "abc", 1, 1)
    platform.switch_service(rollout, ServiceRole.ACTIVE, "web-active", "abc")
    platform.close(keep=True)

    again = LocalPlatform(tmp_path)
    try:
        assert again.services(rollout) == {"web-active": "abc"}
    finally:
        again.close()


def test_an_unreadable_state_file_is_reported_not_reset(tmp_path: Path) -> None:
    (tmp_path / "platform.json").write_text("{not json")

    with pytest.raises(PermanentError, match=r"platform\.json is not readable.*move it aside"):
        LocalPlatform(tmp_path)

    assert (tmp_path / "platform.json").read_text() == "{not json"


def test_a_template_without_a_command_names_the_field(platform: LocalPlatform) -> None:
    rollout = app_rollout(command=[])

    with pytest.raises(PermanentError, match=r"spec\.template\.spec\.containers\[0\]\.command"):
        platform.create_revision(rollout, "abc", 1, 1)


def members(groups: list[int]) -> list[int]:
    """Live processes (not zombies) whose process group is one of ``groups``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def test_a_failing_backends_callback_is_told_again(tmp_path: Path) -> None:
    told: list[list[tuple[str, int]]] = []

    def flaky(_hash: str, backends: list[tuple[str, int]]) -> None:
        told.append(backends)
        if len(told) == 1:
            raise RuntimeError("proxy not up yet")

    platform = LocalPlatform(tmp_path, on_backends_changed=flaky)
    try:
        rollout = app_rollout(probe=None, command=["sleep", "60"])
        platform.create_revision(rollout, "abc", 1, 1)
        wait_until(lambda: len(told) >= 2, what="the callback to be retried")
        assert told[0] == told[1] == platform.backends(rollout, "abc")
    finally:
        platform.close()
