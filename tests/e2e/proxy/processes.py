"""Starting the proxy and test backends as real processes on ephemeral loopback ports, and stopping them.

Each process prints one JSON line once bound; `spawn` waits for it (with a timeout, so a broken start fails the
test instead of hanging it) and `Running.stop` terminates the process group it started, and only that.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-proxy-admin-token-0123456789"
"""The admin token every test proxy is started with (through its environment, as `proxy` does)."""


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def listen(self) -> str:
        return str(self.info["listen"])

    @property
    def admin(self) -> str:
        return f"http://{self.info['admin']}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


def spawn(args: list[str], timeout: float = 15.0, env: dict[str, str] | None = None) -> Running:
    """Start ``python -m ...args`` from the repository root and wait for its JSON line on stdout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if line:
                return Running(process, json.loads(line))
        if process.poll() is not None:
            break
    process.kill()
    _, err = process.communicate(timeout=5)
    raise RuntimeError(f"{' '.join(args)} did not start: {err.decode(errors='replace')[-2000:]}")


def backend(name: str) -> Running:
    return spawn(["tests.e2e.proxy.backend", "--name", name])


def proxy(state_file: Path | None = None, *extra: str, token: str = TOKEN) -> Running:
    """A proxy process on ephemeral ports, its admin token ``token`` passed in ``HEADWAY_PROXY_TOKEN``."""
    args = ["headway.runtimes.embedded.proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *extra]
    if state_file is not None:
        args += ["--state-file", str(state_file)]
    return spawn(args, env={"HEADWAY_PROXY_TOKEN": token})


def call(
    method: str, url: str, body: object = None, timeout: float = 5.0, token: str | None = TOKEN
) -> tuple[int, Any]:
    """A blocking JSON call (the admin API, with ``token`` unless None); returns status and decoded body."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token is not None else {})
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")
