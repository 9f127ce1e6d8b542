"""HAProxy as a traffic router, driven through its Runtime API: weights, drain and servers without a reload.

For users who need more throughput than the built-in proxy, each rollout is one HAProxy backend whose servers
are its replicas, named ``<revision>-<n>``. The revision split is the sum of server weights per revision, so
`set_weight` spreads each revision's percentage over its servers (HAProxy weights are 0..256 per server; a
revision's share is ``2 * percent`` split evenly, so the read-back rounds to the percent that was set).
HAProxy's own roundrobin is a smooth weighted round-robin, like the built-in proxy's.

`HAProxyRuntime` is the socket client (UNIX or TCP ``stats socket ... level admin``), one connection per
command (HAProxy's non-interactive mode). `haproxy_config` writes a minimal haproxy.cfg for one or more
rollouts. Header and mirror routes need configuration HAProxy cannot change at runtime, so asking for one is a
`PermanentError` that says to use the built-in proxy; removing routes is a no-op.

`restore` writes back the weights found when this router first touched the backend; a router that restarted
since then has nothing to write back and leaves the weights as they are.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError, TemporaryError
from headway.core.observation import Drift, RouterState
from headway.routers.drift import weight_drift
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch

MAX_SERVER_WEIGHT = 256
SHARE_SCALE = 2
"""A revision's summed server weight is ``SHARE_SCALE * percent`` (200 at 100%, within HAProxy's 256)."""

_DRAIN = 0x18
_MAINT = 0x01 | 0x02 | 0x04 | 0x20
_SUCCESS = ("", "New server registered.", "Server deleted.")


class RuntimeAPIError(Exception):
    """HAProxy answered a command with an error message."""


@dataclass(frozen=True)
class ServerState:
    """One server as ``show servers state`` reports it."""

    name: str
    address: str
    port: int
    weight: int
    admin_state: int

    @property
    def revision(self) -> str:
        return self.name.rpartition("-")[0] or self.name

    @property
    def draining(self) -> bool:
        return bool(self.admin_state & _DRAIN)

    @property
    def maintenance(self) -> bool:
        return bool(self.admin_state & _MAINT)


class HAProxyRuntime:
    """A client for HAProxy's Runtime API on a UNIX socket path or a ``(host, port)`` TCP address."""

    def __init__(self, address: str | Path | tuple[str, int], *, timeout: float = 2.0) -> None:
        self.address = address
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer (stripped); connection failures are `TemporaryError`."""
        if "\n" in line or ";" in line:
            raise ValueError(f"one command per call, without newlines or ';': {line!r}")
        try:
            if isinstance(self.address, tuple):
                sock = socket.create_connection(self.address, timeout=self.timeout)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(str(self.address))
            with sock:
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise TemporaryError(f"HAProxy runtime API at {self.address} did not answer: {error}", delay=2.0) from None
        return b"".join(chunks).decode(errors="replace").strip()

    def checked(self, line: str) -> str:
        """`command`, raising `RuntimeAPIError` when the answer is not one of the success messages."""
        answer = self.command(line)
        if answer not in _SUCCESS:
            raise RuntimeAPIError(f"{line!r}: {answer}")
        return answer

    def servers(self, backend: str) -> list[ServerState]:
        answer = self.command(f"show servers state {backend}")
        lines = answer.splitlines()
        if len(lines) < 2 or not lines[1].startswith("#"):
            raise RuntimeAPIError(f"show servers state {backend}: {answer or 'no answer'}")
        columns = lines[1].lstrip("# ").split()
        result = []
        for line in lines[2:]:
            row = dict(zip(columns, line.split(), strict=False))
            try:
                server = ServerState(
                    name=row["srv_name"],
                    address=row["srv_addr"],
                    port=int(row.get("srv_port", "0")),
                    weight=int(row["srv_uweight"]),
                    admin_state=int(row["srv_admin_state"]),
                )
            except (KeyError, ValueError) as error:  # an answer we cannot read is the adapter's error, named
                raise RuntimeAPIError(f"show servers state {backend}: unreadable line {line!r} ({error!r})") from None
            result.append(server)
        return result

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        self.checked(f"set server {backend}/{server} weight {weight}")

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``ready``, ``drain`` (no new requests, existing ones finish) or ``maint``."""
        if state not in {"ready", "drain", "maint"}:
            raise ValueError(f"state must be ready, drain or maint, got {state!r}")
        self.checked(f"set server {backend}/{server} state {state}")

    def add_server(self, backend: str, server: str, address: str, weight: int = 1) -> None:
        """Register a server (HAProxy ≥ 2.4 dynamic servers) and put it in rotation."""
        self.checked(f"add server {backend}/{server} {address} weight {weight}")
        self.set_state(backend, server, "ready")

    def remove_server(self, backend: str, server: str) -> None:
        """Take a server out (maintenance) and delete it; a server still serving is a `TemporaryError`."""
        self.set_state(backend, server, "maint")
        answer = self.command(f"del server {backend}/{server}")
        if answer not in _SUCCESS:
            raise TemporaryError(f"cannot delete {backend}/{server} yet: {answer}", delay=1.0)


class HAProxyRouter:
    """Implements `headway.routers.base.TrafficRouter` over the HAProxy Runtime API."""

    type: ClassVar[str] = "haproxy"

    def __init__(self, runtime: HAProxyRuntime, backend_for: Callable[[Rollout], str] | None = None) -> None:
        self.runtime = runtime
        self._backend_for = backend_for or (lambda rollout: rollout.metadata.name)
        self._roles: dict[str, tuple[str | None, str | None]] = {}
        self._original: dict[str, dict[str, int]] = {}

    def backend(self, rollout: Rollout) -> str:
        return self._backend_for(rollout)

    def set_weight(
        self, rollout: Rollout, canary_weight: int, canary_hash: str | None, stable_hash: str | None
    ) -> None:
        if not 0 <= canary_weight <= 100:
            raise PermanentError(f"canary weight must be within 0..100, got {canary_weight}")
        backend = self.backend(rollout)
        servers = self._servers(backend)
        self._original.setdefault(backend, {server.name: server.weight for server in servers})
        canary = canary_hash if canary_hash != stable_hash else None
        shares = {stable_hash: 100 - canary_weight if canary else 100} if stable_hash else {}
        if canary:
            shares[canary] = canary_weight
        self._write(backend, servers, shares)
        self._roles[backend] = (canary, stable_hash)

    def set_header_route(self, rollout: Rollout, name: str, match: Sequence[HeaderRoutingMatch] | None) -> None:
        if match is not None:
            raise PermanentError(f"the haproxy router cannot add header route {name!r}; use the built-in proxy")

    def set_mirror_route(
        self, rollout: Rollout, name: str, match: Sequence[RouteMatch] | None, percentage: int
    ) -> None:
        if match is not None:
            raise PermanentError(f"the haproxy router cannot add mirror route {name!r}; use the built-in proxy")

    def remove_managed_routes(self, rollout: Rollout) -> None:
        """Nothing to remove: this router never adds routes."""

    def read_weight(self, rollout: Rollout, roles: tuple[str | None, str | None] | None = None) -> RouterState:
        """The canary's share of the live server weights; ``roles`` (canary, stable) stand in for the ones
        this router wrote when it has none (a fresh router that did not write them itself)."""
        backend = self.backend(rollout)
        totals = _totals(self._servers(backend))
        canary, stable = self._roles.get(backend) or roles or (None, None)
        if canary is None and stable is None:
            # Roles unknown (fresh router): with one weighted revision there is no canary traffic.
            weighted = [revision for revision, total in totals.items() if total > 0]
            if len(weighted) <= 1:
                return RouterState(canary_weight=0, verified=True)
            return RouterState(canary_weight=None, verified=None)
        canary_part = totals.get(canary, 0) if canary else 0
        total = canary_part + (totals.get(stable, 0) if stable else 0)
        return RouterState(canary_weight=round(100 * canary_part / total) if total else 0, verified=True)

    def read_state(self, rollout: Rollout, expected: ExpectedRouting | None) -> RouterState:
        """HAProxy manages only weights (no routes): the revision split read back is compared with the one set.

        The revisions' roles come from the status (``expected``) when this router did not write them (restarted
        since): otherwise two weighted revisions would read as "cannot tell" and the last write be trusted."""
        roles = None
        if expected is not None:
            canary_hash = expected.canary_hash if expected.canary_hash != expected.stable_hash else None
            roles = (canary_hash, expected.stable_hash)
        state = self.read_weight(rollout, roles)
        drift: tuple[Drift, ...] = ()
        if expected is not None and state.canary_weight is not None:
            canary = expected.canary_hash != expected.stable_hash and expected.canary_hash is not None
            wanted = expected.canary_weight if canary else 0
            drift = weight_drift(expected, f"canary weight {state.canary_weight}", f"canary weight {wanted}")
        return RouterState(canary_weight=state.canary_weight, verified=state.verified, drift=drift)

    def restore(self, rollout: Rollout) -> None:
        backend = self.backend(rollout)
        original = self._original.pop(backend, None)
        self._roles.pop(backend, None)
        if original is None:
            return
        for server in self._servers(backend):
            if server.name in original and server.weight != original[server.name]:
                self._set_weight(backend, server.name, original[server.name])

    # --- helpers -------------------------------------------------------------------------------------------

    def _servers(self, backend: str) -> list[ServerState]:
        try:
            return self.runtime.servers(backend)
        except RuntimeAPIError as error:
            raise PermanentError(f"HAProxy backend {backend!r}: {error}") from None

    def _write(self, backend: str, servers: Sequence[ServerState], shares: Mapping[str, int]) -> None:
        members: dict[str, list[ServerState]] = {}
        for server in servers:
            if not server.maintenance:
                members.setdefault(server.revision, []).append(server)
        for revision, group in members.items():
            share = shares.get(revision, 0)
            weight = min(MAX_SERVER_WEIGHT, round(share * SHARE_SCALE / len(group)))
            weight = max(weight, 1) if share else 0
            for server in group:
                if server.weight != weight:
                    self._set_weight(backend, server.name, weight)

    def _set_weight(self, backend: str, server: str, weight: int) -> None:
        try:
            self.runtime.set_weight(backend, server, weight)
        except RuntimeAPIError as error:
            raise TemporaryError(str(error), delay=1.0) from None


def _totals(servers: Sequence[ServerState]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for server in servers:
        if not server.maintenance:
            totals[server.revision] = totals.get(server.revision, 0) + server.weight
    return totals


@dataclass(frozen=True)
class Site:
    """One rollout's frontend address and its initial servers per revision (``{"abc": ["127.0.0.1:9001"]}``)."""

    name: str
    listen: str
    servers: Mapping[str, Sequence[str]]
    stable: str | None = None


def haproxy_config(sites: Sequence[Site], *, runtime_socket: str | Path, timeout_ms: int = 30_000) -> str:
    """A minimal haproxy.cfg: one frontend and one roundrobin backend per site, stable at full weight.

    Servers are named ``<revision>-<n>`` as `HAProxyRouter` expects; a site without ``stable`` gives every
    server weight 1. The runtime socket is at admin level (weights, states, dynamic servers).
    """
    lines = [
        "global",
        f"    stats socket {runtime_socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    timeout connect 2s",
        f"    timeout client {timeout_ms}ms",
        f"    timeout server {timeout_ms}ms",
        "    retries 1",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        "",
    ]
    for site in sites:
        lines += [f"frontend {site.name}", f"    bind {site.listen}", f"    default_backend {site.name}", ""]
        lines += [f"backend {site.name}", "    balance roundrobin"]
        for revision, addresses in site.servers.items():
            share = 100 if site.stable is None or revision == site.stable else 0
            weight = max(1, round(share * SHARE_SCALE / max(1, len(addresses)))) if share else 0
            for index, address in enumerate(addresses):
                lines.append(f"    server {revision}-{index} {address} weight {weight}")
        lines.append("")
    return "\n".join(lines)
