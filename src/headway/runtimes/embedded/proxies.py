"""The embedded mode's proxy processes: started, adopted after a restart, fed the ready backends, repaired.

One weighted proxy process per rollout routed through it (``trafficRouting.plugins["headway.dev/proxy"]``), started
in its own session so it survives the controller, found again after a restart from its endpoint file (a PID
counts only if it is still a proxy), and driven over its admin API with the instance's token (a 0600 file in the
state directory, never on a command line). `Proxies.sync` keeps each revision's backends equal to the platform's
ready replicas; `Proxies.repair` reads the live state back and sets again what someone else changed. This is the
process management of the embedded mode; `headway.bootstrap` only wires it in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headway.core.errors import PermanentError, TemporaryError
from headway.engine import modes
from headway.loopback import DIRECT
from headway.platforms.local_process import start_ticks
from headway.private_files import append_private, private_dir, write_private_atomically
from headway.spec.rollout import Rollout, rollout_key

log = logging.getLogger(__name__)

PROXY_PLUGIN = modes.PROXY_PLUGIN
"""The ``trafficRouting.plugins`` key that routes a rollout through the built-in proxy (the name the mode registry
admits it by); config ``{port: 8080}``."""
PORT_ANNOTATION = "headway.dev/proxy-port"
"""Where a blue/green rollout (no trafficRouting) names its traffic port; 0 or absent: any free port."""
PROXY_MODULE = "headway.runtimes.embedded.proxy"
PROXY_START_SECONDS = 15.0
PROXY_TOKEN_FILE = "admin.token"  # noqa: S105 - a name, not a secret
"""In ``<state_dir>/proxies/``: the token every proxy of this instance requires on its admin API (mode 0600)."""


# --- proxies -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyProcess:
    """A running proxy: its PID and where it listens for traffic and for the admin API."""

    key: str
    pid: int
    listen: str
    admin: str

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"


class Proxies:
    """One proxy process per routed rollout: started on demand, adopted after a restart, stopped on teardown.

    A proxy's endpoint is recorded in ``<state_dir>/proxies/<namespace>_<name>.json`` and its routing state in
    ``….state.json`` (the proxy saves and reloads that file itself), so a restarted controller finds the
    proxy that kept serving, and a proxy that died comes back on the same port with the same weights.

    Their admin APIs require the instance's proxy token, kept in ``<state_dir>/proxies/admin.token`` (0600) from
    the first start until `stop_all`, so proxies adopted after a controller restart still accept it. A proxy
    reads it from that file (``--token-file``): on the command line every local user could read it in ``ps``.
    """

    def __init__(self, state_dir: Path, *, python: str = sys.executable) -> None:
        self.dir = private_dir(state_dir / "proxies")
        self.python = python
        self.token_file = self.dir / PROXY_TOKEN_FILE
        self.token = _proxy_token(self.token_file)
        self._running: dict[str, ProxyProcess] = {}
        self._pushed: dict[str, dict[str, list[str]]] = {}
        self._active: dict[str, str] = {}

    def _file(self, key: str, suffix: str) -> Path:
        return self.dir / f"{key.replace('/', '_')}{suffix}"

    def known(self) -> dict[str, ProxyProcess]:
        """Every proxy recorded in the state directory, alive or not."""
        found = {}
        for path in sorted(self.dir.glob("*.endpoint.json")):
            try:
                data = json.loads(path.read_text())
                found[data["key"]] = ProxyProcess(data["key"], int(data["pid"]), data["listen"], data["admin"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable proxy endpoint file %s", path)
        return found

    def get(self, key: str) -> ProxyProcess | None:
        return self._running.get(key)

    def ensure(self, rollout: Rollout) -> ProxyProcess:
        """The rollout's proxy, adopted if alive, else started (on its previous port when it had one)."""
        key = rollout_key(rollout)
        current = self._running.get(key)
        if current is not None and is_proxy(current.pid) and _healthy(current.admin_url, self.token):
            return current
        recorded = self.known().get(key)
        if recorded is not None and is_proxy(recorded.pid) and _healthy(recorded.admin_url, self.token):
            self._running[key] = recorded
            self._forget(key)
            return recorded
        port = _configured_port(rollout)
        if port == 0 and recorded is not None:
            port = int(recorded.listen.rpartition(":")[2])
        gone = current or recorded
        process = self._start(key, port)
        if gone is not None:
            log.warning(
                "the proxy of %s (pid %d) was gone; started pid %d on %s with its saved routing",
                key,
                gone.pid,
                process.pid,
                process.listen,
            )
        self._running[key] = process
        self._forget(key)
        return process

    def _forget(self, key: str) -> None:
        """A proxy found or started anew gets everything pushed again: what it holds is not known here."""
        self._pushed.pop(key, None)
        self._active.pop(key, None)

    def admin_url(self, rollout: Rollout) -> str:
        """For `ProxyRouter`: a temporary error while the proxy cannot be started, so the pass is retried."""
        try:
            return self.ensure(rollout).admin_url
        except OSError as error:
            raise TemporaryError(f"starting the proxy of {rollout_key(rollout)} failed: {error}", delay=2.0) from None

    def _start(self, key: str, port: int) -> ProxyProcess:
        endpoint = self._file(key, ".endpoint.json")
        log_path = self._file(key, ".log")
        command = [
            self.python,
            "-m",
            PROXY_MODULE,
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            "127.0.0.1:0",
            "--state-file",
            str(self._file(key, ".state.json")),
            "--token-file",
            str(self.token_file),
        ]
        if not self.token_file.exists():  # removed by a `stop_all` of this same object: write it again
            write_private_atomically(self.token_file, self.token)
        with append_private(log_path) as log_file:
            offset = log_file.tell()
            child = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # survives the controller and its terminal's signals
                close_fds=True,
            )
        deadline = time.monotonic() + PROXY_START_SECONDS
        while time.monotonic() < deadline:
            bound = _first_json_line(log_path, offset)
            if bound is not None:
                process = ProxyProcess(key, child.pid, bound["listen"], bound["admin"])
                write_private_atomically(endpoint, json.dumps({"key": key, **vars(process)}))
                return process
            if child.poll() is not None:
                tail = log_path.read_bytes()[offset:].decode(errors="replace").strip()[-500:]
                raise OSError(f"proxy exited with {child.returncode}: {tail or 'no output'}")
            time.sleep(0.02)
        child.kill()
        raise OSError(f"proxy did not report its address within {PROXY_START_SECONDS:.0f} s (log: {log_path})")

    def sync(self, rollout: Rollout, backends: Mapping[str, list[tuple[str, int]]]) -> None:
        """Make the proxy's backends equal to ``backends`` (revision hash → ready replicas); writes only changes."""
        key = rollout_key(rollout)
        wanted = {hash: [f"{host}:{port}" for host, port in items] for hash, items in backends.items()}
        pushed = self._pushed.get(key, {})
        patch: dict[str, list[str] | None] = {h: b for h, b in wanted.items() if pushed.get(h) != b}
        patch.update({h: None for h in pushed if h not in wanted})
        if not patch:
            return
        proxy = self.ensure(rollout)
        _request("PATCH", proxy.admin_url + "/state", self.token, {"backends": patch})
        self._pushed[key] = wanted

    def repair(self, rollout: Rollout, backends: Mapping[str, list[tuple[str, int]]], active: str | None) -> list[str]:
        """Read the proxy's live state and set again what differs from ``backends`` (and, for blue/green, from
        all traffic to ``active``); what someone else changed (not a change of ours still on its way) is described
        in the list returned, for the runtime's event and log line.

        `sync` pushes only what changed since its last push, so on its own it never sees an edit made through the
        admin API (the case-2 outage: a stable revision's backends emptied while its replicas run); this looks.
        """
        key = rollout_key(rollout)
        proxy = self.ensure(rollout)
        live = _request("GET", proxy.admin_url + "/state", self.token)
        if not isinstance(live, dict):
            raise OSError(f"the proxy of {key} answered GET /state with {type(live).__name__}")
        wanted = {h: sorted(f"{host}:{port}" for host, port in items) for h, items in backends.items()}
        pushed = {h: sorted(items) for h, items in self._pushed.get(key, {}).items()}
        found = _live_backends(live)
        patch: dict[str, list[str] | None] = {}
        changed: list[str] = []
        for revision in sorted(set(wanted) | set(found)):
            want, have = wanted.get(revision), found.get(revision, [])
            if (want or []) == have:
                continue
            patch[revision] = want
            if pushed.get(revision) == want or (want is None and revision not in pushed):
                changed.append(
                    f"backends of revision {revision}: expected {_addresses(want)} (its ready replicas), "
                    f"found {_addresses(have)}"
                )
        body: dict[str, Any] = {"backends": patch} if patch else {}
        if active is not None:
            split = {"stable": active, "canary": None, "weights": {active: 100}}
            live_split = {k: live.get(k) for k in ("stable", "canary")} | {"weights": live.get("weights") or {}}
            if live_split != split:
                body.update(split)
                if self._active.get(key) == active:
                    found_split = json.dumps(live_split, sort_keys=True)
                    changed.append(f"traffic split: expected all traffic to {active}, found {found_split}")
        if body:
            _request("PATCH", proxy.admin_url + "/state", self.token, body)
        self._pushed[key] = {h: [f"{host}:{port}" for host, port in items] for h, items in backends.items()}
        if active is not None:
            self._active[key] = active
        return changed

    def instance(self, rollout: Rollout) -> str | None:
        """The proxy process serving ``rollout`` as it is known here (PID and kernel start time), for
        `ProxyRouter.instance_of`: a different answer means the proxy was replaced."""
        process = self._running.get(rollout_key(rollout))
        if process is None:
            return None
        return f"pid {process.pid} started at tick {start_ticks(process.pid) or '?'}"

    def route_active(self, rollout: Rollout, active: str | None) -> None:
        """Blue/green: send all traffic to the revision the active Service selects (after its backends are in)."""
        key = rollout_key(rollout)
        if active is None or self._active.get(key) == active:
            return
        proxy = self.ensure(rollout)
        body = {"stable": active, "canary": None, "weights": {active: 100}}
        _request("PATCH", proxy.admin_url + "/state", self.token, body)
        self._active[key] = active

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM every recorded proxy (it drains), SIGKILL after ``grace``; forget their endpoints and token."""
        recorded = {**self.known(), **self._running}
        for process in recorded.values():
            if is_proxy(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in recorded.values():
            while is_proxy(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if is_proxy(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            self._file(process.key, ".endpoint.json").unlink(missing_ok=True)
        self.token_file.unlink(missing_ok=True)
        self._running.clear()
        self._pushed.clear()
        self._active.clear()


def _live_backends(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """The proxy's backends that take new requests, per revision, sorted (from its ``GET /state``)."""
    found: dict[str, list[str]] = {}
    for revision, items in (state.get("backends") or {}).items():
        addresses = [item if isinstance(item, str) else item.get("address") for item in items or ()]
        draining = [False if isinstance(item, str) else bool(item.get("draining")) for item in items or ()]
        found[str(revision)] = sorted(str(a) for a, d in zip(addresses, draining, strict=True) if not d)
    return found


def _addresses(items: list[str] | None) -> str:
    return "[" + ", ".join(items or []) + "]" if items else "no backends"


def uses_proxy(rollout: Rollout) -> bool:
    """Canaries routed through the built-in proxy, and every blue/green rollout (the proxy is its active Service)."""
    if rollout.spec.strategy.blue_green is not None:
        return True
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary is not None else None
    return routing is not None and PROXY_PLUGIN in (routing.plugins or {})


def _configured_port(rollout: Rollout) -> int:
    """The traffic port: the proxy plugin's ``port`` (canary) or the ``headway.dev/proxy-port`` annotation."""
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary is not None else None
    config = (routing.plugins or {}).get(PROXY_PLUGIN) if routing is not None else None
    if isinstance(config, dict) and "port" in config:
        port: object = config["port"]
        where = f"spec.strategy.canary.trafficRouting.plugins[{PROXY_PLUGIN}].port"
    else:
        port = rollout.metadata.annotations.get(PORT_ANNOTATION, "0")
        where = f"metadata.annotations[{PORT_ANNOTATION}]"
        port = int(port) if isinstance(port, str) and port.isdigit() else port
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise PermanentError(f"{where}: expected a port number (0 for any free port), got {port!r}")
    return port


def _first_json_line(path: Path, offset: int) -> dict[str, Any] | None:
    try:
        text = path.read_bytes()[offset:].decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and "listen" in data and "admin" in data:
                    return data
    return None


def _proxy_token(path: Path) -> str:
    """The instance's proxy token: the one in ``path`` if there is one, else a new one written there (0600)."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        write_private_atomically(path, token)
    elif path.stat().st_mode & 0o077:
        log.warning("%s was readable by others: restricted to its owner (headway down replaces the token)", path)
        path.chmod(0o600)
    return token


def is_proxy(pid: int) -> bool:
    """Alive, not a zombie, and really a proxy (a recycled PID must never be killed)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return PROXY_MODULE in cmdline and stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _healthy(admin_url: str, token: str) -> bool:
    """Alive and accepting our token: a proxy that refuses it could not be driven, so it is not adopted."""
    try:
        _request("GET", admin_url + "/state", token)
    except OSError:
        return False
    return True


def _request(method: str, url: str, token: str, body: object = None, timeout: float = 2.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only: our own endpoint, or a URL checked at load
    with DIRECT.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")
