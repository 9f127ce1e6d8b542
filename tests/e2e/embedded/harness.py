"""The embedded mode for end-to-end tests: a real daemon process, real proxy and app processes, real HTTP.

`DaemonProcess` runs ``python -m headway.bootstrap`` on a temporary state directory and talks to its API with
the token it wrote, as the CLI does. `manifest` writes rollouts of the bundled sample app. The load generator is
the one in ``examples/embedded/loadgen.py``, loaded by path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "examples" / "embedded" / "app.py"
LOADGEN = ROOT / "examples" / "embedded" / "loadgen.py"


def load_loadgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("headway_example_loadgen", LOADGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


loadgen = load_loadgen()


def manifest(
    name: str = "web",
    *,
    image: str = "v1",
    strategy: str = "canary",
    steps: list[dict[str, Any]] | None = None,
    replicas: int = 2,
    faulty: str = "v3",
) -> str:
    """A Rollout of the sample app; canaries go through the built-in proxy, blue/green uses it as active."""
    container = {
        "name": "app",
        "image": image,
        "command": [sys.executable, str(APP)],
        "env": [
            {"name": "FAULTY_VERSIONS", "value": faulty},
            {"name": "FAULT_ERROR_RATE", "value": "0.3"},
            {"name": "FAULT_LATENCY_MS", "value": "5"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 0.5},
    }
    if strategy == "canary":
        chosen: dict[str, Any] = {
            "canary": {
                "canaryService": f"{name}-canary",
                "stableService": f"{name}-stable",
                "scaleDownDelaySeconds": 2,
                "abortScaleDownDelaySeconds": 2,
                "trafficRouting": {"plugins": {"headway.dev/proxy": {"port": 0}}},
                "steps": steps if steps is not None else [{"setWeight": 30}, {"pause": {}}],
            }
        }
    else:
        chosen = {
            "blueGreen": {
                "activeService": f"{name}-active",
                "previewService": f"{name}-preview",
                "autoPromotionEnabled": True,
                "scaleDownDelaySeconds": 2,
            }
        }
    rollout = {
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
            },
            "strategy": chosen,
        },
    }
    return json.dumps(rollout)


class DaemonProcess:
    """``python -m headway.bootstrap`` on ``state_dir``: start, kill -9, restart, and its API."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.session: aiohttp.ClientSession | None = None

    async def start(self, timeout: float = 20.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = (self.state_dir / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "headway.bootstrap", "--state-dir", str(self.state_dir), "--log-level", "INFO"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        pid = self.process.pid

        async def published() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited: {(self.state_dir / 'daemon.log').read_text()[-2000:]}")
            try:
                endpoint = json.loads((self.state_dir / "daemon.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(endpoint.get("pid") == pid)

        await wait_for(published, timeout, "the daemon to publish its endpoint")
        endpoint = json.loads((self.state_dir / "daemon.json").read_text())
        self.url = endpoint["url"]
        self.token = (self.state_dir / "token").read_text()
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    async def call(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        data = body if isinstance(body, str) else None
        payload = None if isinstance(body, str) else body
        async with self.session.request(method, self.url + path, data=data, json=payload, headers=headers) as response:
            answer = await response.json()
            if expect is not None:
                assert response.status == expect, (response.status, answer)
            return answer

    async def rollout(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", f"/api/v1/rollouts/{name}", expect=200)
        return answer

    async def wait_rollout(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def check() -> bool:
            seen.update(await self.rollout(name))
            return predicate(seen)

        try:
            await wait_for(check, timeout, what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last seen: {_brief(seen)}") from None
        return seen

    async def down(self, timeout: float = 30.0) -> None:
        """``headway down``: shutdown through the API, then wait for the daemon to exit."""
        await self.call("POST", "/api/v1/shutdown", expect=202)
        assert self.process is not None
        await asyncio.to_thread(self.process.wait, timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _brief(view: dict[str, Any]) -> str:
    keys = ("phase", "message", "step", "canaryWeight", "stableImage", "currentImage", "aborted")
    return ", ".join(f"{key}={view.get(key)!r}" for key in keys)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms; fail naming ``what`` after ``timeout`` seconds (generous: CI is slow)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def pids_of(state_dir: Path) -> list[int]:
    """Every process the embedded runtime started and recorded: replicas and proxies."""
    pids: list[int] = []
    platform = state_dir / "platform.json"
    if platform.exists():
        pids.extend(int(pid) for pid in _find_pids(json.loads(platform.read_text())))
    for endpoint in (state_dir / "proxies").glob("*.endpoint.json"):
        pids.append(int(json.loads(endpoint.read_text())["pid"]))
    return pids


def _find_pids(data: Any) -> list[int]:
    if isinstance(data, dict):
        found = [data["pid"]] if isinstance(data.get("pid"), int) else []
        return found + [pid for value in data.values() for pid in _find_pids(value)]
    if isinstance(data, list):
        return [pid for item in data for pid in _find_pids(item)]
    return []


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


async def running_daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """A real embedded daemon for one test, shut down afterwards with everything it started (the fixture body)."""
    process = DaemonProcess(tmp_path / "state")
    await process.start()
    try:
        yield process
    finally:
        started = pids_of(process.state_dir)
        if process.process is not None and process.process.poll() is None:
            try:
                await process.down()
            except Exception:  # the test failed mid-way; still leave no process behind
                process.process.kill()
        await process.close()
        from headway.runtimes.embedded.state_dir import teardown

        teardown(process.state_dir)  # a no-op after a clean down; cleans up after a failed test
        assert not [pid for pid in started if alive(pid)], "processes left behind"
