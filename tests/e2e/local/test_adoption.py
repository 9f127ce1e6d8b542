"""Crash safety of the data plane: replicas outlive a ``kill -9`` of the controller and are adopted, not restarted.

A child process runs a `LocalPlatform` with two ready replicas and is killed with SIGKILL. The replicas keep
answering meanwhile; a new platform on the same state directory adopts them (same PIDs, same ports, no restart,
ready at once so the proxy keeps its backends), and restarts on its old port only the one that died while no one
was watching.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import urllib.request
from pathlib import Path

from headway.platforms.local import LocalPlatform
from tests.unit.platforms.apps import app_rollout, pid_alive, wait_until


def _run_controller(state_dir: str, report: str) -> None:
    platform = LocalPlatform(state_dir)
    rollout = app_rollout()
    platform.create_revision(rollout, "abc", 1, 2)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2, what="replicas in the child")
    replicas = [{"pid": info.pid, "port": info.port} for info in platform.replicas(rollout, "abc")]
    Path(report).write_text(json.dumps(replicas))
    signal.pause()


def answer(port: int) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return json.loads(response.read())


def test_a_new_platform_adopts_the_replicas_a_killed_one_left_running(tmp_path: Path) -> None:
    report = tmp_path / "replicas.json"
    context = multiprocessing.get_context("spawn")
    controller = context.Process(target=_run_controller, args=(str(tmp_path / "state"), str(report)))
    controller.start()
    wait_until(report.exists, timeout=30, what="the child controller to report its replicas")
    first, second = json.loads(report.read_text())

    assert controller.pid is not None
    os.kill(controller.pid, signal.SIGKILL)
    controller.join(10)

    assert all(pid_alive(replica["pid"]) for replica in (first, second))
    assert answer(first["port"]) == {"version": "v1"}, "traffic must keep flowing without the controller"
    os.kill(second["pid"], signal.SIGKILL)  # dies while no one watches
    wait_until(lambda: not pid_alive(second["pid"]), what="the second replica to die")

    told: list[tuple[str, list[tuple[str, int]]]] = []
    platform = LocalPlatform(tmp_path / "state", on_backends_changed=lambda h, backends: told.append((h, backends)))
    try:
        rollout = app_rollout()
        assert platform.revisions(rollout)["abc"].ready == 1, "the adopted replica is ready at once"
        assert platform.backends(rollout, "abc") == [("127.0.0.1", first["port"])]
        wait_until(lambda: bool(told), what="the proxy to be told the adopted backends")
        assert told[0] == ("abc", [("127.0.0.1", first["port"])])
        wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2, what="the dead replica to restart")

        adopted, restarted = platform.replicas(rollout, "abc")
        assert (adopted.pid, adopted.port, adopted.restarts) == (first["pid"], first["port"], 0)
        assert (restarted.port, restarted.restarts) == (second["port"], 1)
        assert restarted.pid != second["pid"]
        assert answer(restarted.port) == {"version": "v1"}
    finally:
        platform.close()

    assert not pid_alive(first["pid"])


def test_a_reused_pid_is_not_mistaken_for_a_replica(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path)
    rollout = app_rollout()
    platform.create_revision(rollout, "abc", 1, 1)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 1)
    platform.close(keep=True)
    state = json.loads((tmp_path / "platform.json").read_text())
    real_pid = state["revisions"][0]["replicas"][0]["pid"]
    os.kill(real_pid, signal.SIGKILL)  # frees the port; the recorded PID now names some other live process
    wait_until(lambda: not pid_alive(real_pid))
    state["revisions"][0]["replicas"][0]["pid"] = os.getpid()  # alive, but not the app
    (tmp_path / "platform.json").write_text(json.dumps(state))

    again = LocalPlatform(tmp_path)
    try:
        wait_until(lambda: again.revisions(rollout)["abc"].ready == 1, what="a fresh replica")
        [info] = again.replicas(rollout, "abc")
        assert info.pid not in (os.getpid(), real_pid)
        assert info.restarts == 1
        assert again.replicas(rollout, "abc")[0].restarts == 1, "the fresh replica must not crash-loop"
    finally:
        again.close()


def test_a_drain_interrupted_by_a_crash_is_finished_by_the_next_instance(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, in_flight=lambda _backend: 1)  # never drains by itself
    rollout = app_rollout(grace=30)
    platform.create_revision(rollout, "abc", 1, 2)
    wait_until(lambda: platform.revisions(rollout)["abc"].ready == 2)
    leaving = platform.replicas(rollout, "abc")[1].pid
    assert leaving is not None
    platform.scale_revision(rollout, "abc", 1)
    state = tmp_path / "platform.json"
    wait_until(lambda: bool(json.loads(state.read_text())["leaving"]), what="the drain to be recorded")
    platform.close(keep=True)
    assert pid_alive(leaving)

    again = LocalPlatform(tmp_path, in_flight=lambda _backend: 0)
    try:
        wait_until(lambda: not pid_alive(leaving), what="the next instance to finish the drain")
        assert again.revisions(rollout)["abc"].replicas == 1
        assert [info.pid for info in again.replicas(rollout, "abc")] != [leaving]
    finally:
        again.close()
