"""The real engine driving real processes in real time: a crash-looping canary is caught, and state survives.

These are the platform's and the store's part of the embedded story (the runtime adds the proxy and the timer
loop): the engine's progress deadline fires on a canary whose replicas never get ready, because the platform
reports them at ready 0 however often they restart; and a controller restarted on the same state directory
resumes the rollout at the step it had reached, with the same processes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headway.engine.reconcile import run_pass
from headway.platforms.local import LocalPlatform
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import Rollout
from headway.spec.status import Phase, RolloutStatus
from headway.stores.sqlite import SqliteStore
from tests.unit.platforms.apps import app_rollout

KEY = "default/web"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]


def rollout(version: str, command: list[str] | None = None) -> Rollout:
    return app_rollout(
        version=version,
        command=command,
        replicas=2,
        steps=STEPS,
        progressDeadlineSeconds=3,
        progressDeadlineAbort=True,
    )


def drive(
    spec: Rollout, platform: LocalPlatform, store: SqliteStore, until: Callable[[RolloutStatus], bool]
) -> RolloutStatus:
    """Run passes in real time (at most every 0.1 s) until ``until`` holds for the saved status; 30 s at most."""
    runs = ScriptedRuns()
    deadline = time.monotonic() + 30
    while True:
        now = datetime.now(UTC)
        runs.advance(now)
        run_pass(spec, now=now, platform=platform, router=None, runs=runs, store=store)
        status = store.load(KEY)[0]
        if until(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout stuck: {status.phase} {status.message}")
        time.sleep(0.1)


def test_a_crash_looping_canary_is_aborted_by_the_progress_deadline(tmp_path: Path) -> None:
    store, platform = SqliteStore(tmp_path), LocalPlatform(tmp_path, backoff=(0.05, 0.2))
    try:
        stable = drive(rollout("v1"), platform, store, lambda s: s.phase is Phase.HEALTHY)
        assert stable.stable_rs is not None

        # It exits at once, so it is never ready: a crash 50 ms after start (the app's CRASH_AFTER_SECONDS) could
        # answer one readiness probe first on a loaded machine, pass the setWeight step and wait at the pause.
        crashing = rollout("v2", command=[sys.executable, "-c", "raise SystemExit(1)"])
        bad = drive(crashing, platform, store, lambda s: s.abort)

        assert bad.phase is Phase.DEGRADED
        revisions = platform.revisions(rollout("v1"))
        assert revisions[stable.stable_rs].ready == 2
        canary = next(state for hash, state in revisions.items() if hash != stable.stable_rs)
        assert canary.ready == 0
    finally:
        platform.close()
        store.close()


def test_a_restarted_controller_resumes_at_the_same_step_with_the_same_processes(tmp_path: Path) -> None:
    store, platform = SqliteStore(tmp_path), LocalPlatform(tmp_path)
    drive(rollout("v1"), platform, store, lambda s: s.phase is Phase.HEALTHY)
    paused = drive(rollout("v2"), platform, store, lambda s: s.phase is Phase.PAUSED)
    before = {hash: platform.replicas(KEY, hash) for hash in platform.revisions(rollout("v2"))}
    platform.close(keep=True)  # what a kill -9 leaves behind: processes running, state on disk
    store.close()

    store, platform = SqliteStore(tmp_path), LocalPlatform(tmp_path)
    try:
        again = drive(rollout("v2"), platform, store, lambda _status: True)

        assert (again.phase, again.current_step_index) == (Phase.PAUSED, paused.current_step_index)
        after = {hash: platform.replicas(KEY, hash) for hash in platform.revisions(rollout("v2"))}
        assert {h: [(r.pid, r.port) for r in rs] for h, rs in after.items()} == {
            h: [(r.pid, r.port) for r in rs] for h, rs in before.items()
        }
    finally:
        platform.close()
        store.close()
