"""Rollouts that run the bundled sample app as local processes, and a poll-with-timeout helper for real time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headway.spec.rollout import Rollout
from tests.scenarios.harness import make_rollout

APP = Path(__file__).resolve().parents[3] / "examples" / "embedded" / "app.py"
APP_COMMAND = (sys.executable, str(APP))
HTTP_PROBE = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 0.2, "failureThreshold": 2}


def app_rollout(
    *,
    name: str = "web",
    version: str = "v1",
    env: dict[str, str] | None = None,
    probe: dict[str, Any] | None = HTTP_PROBE,
    grace: float = 2,
    command: list[str] | None = None,
    steps: list[dict[str, Any]] | None = None,
    replicas: int = 4,
    **spec: Any,
) -> Rollout:
    """A canary Rollout whose container is the sample app (or ``command``), with an HTTP readiness probe.

    ``spec`` adds wire-named fields (``progressDeadlineSeconds=3``).
    """
    container: dict[str, Any] = {
        "name": name,
        "image": version,
        "command": command if command is not None else list(APP_COMMAND),
        "env": [{"name": key, "value": value} for key, value in (env or {}).items()],
        "ports": [{"containerPort": 8080}],
    }
    if probe is not None:
        container["readinessProbe"] = probe
    strategy = {"canary": {"steps": steps if steps is not None else [{"setWeight": 25}, {"pause": {}}]}}
    rollout = make_rollout(strategy, name=name, image=version, replicas=replicas, **spec)
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": grace},
    }
    return rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"template": template})})


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms; fail with ``what`` after ``timeout`` seconds (generous: CI is slow)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
