"""HAProxy router arithmetic without HAProxy: percentages spread over servers, read back, roles, errors.

The seam is our own `HAProxyRuntime.command` (a scripted answer per command); the real-HAProxy tests sit in
`test_adapters.py`.
"""

from __future__ import annotations

import pytest

from headway.core.errors import PermanentError, TemporaryError
from headway.routers.haproxy import HAProxyRouter, HAProxyRuntime, Site, haproxy_config
from tests.scenarios.harness import canary

HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state "
    "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
    "srv_agent_addr srv_agent_port"
)


class ScriptedRuntime(HAProxyRuntime):
    """Keeps server weights in memory and answers like HAProxy 2.6 does."""

    def __init__(self, servers: dict[str, int], admin: dict[str, int] | None = None) -> None:
        super().__init__("/nonexistent")
        self.weights = servers
        self.admin = admin or {}
        self.sent: list[str] = []

    def command(self, line: str) -> str:
        self.sent.append(line)
        words = line.split()
        if words[:3] == ["show", "servers", "state"]:
            if words[3] != "web":
                return f"Can't find backend '{words[3]}'."
            rows = [
                f"3 web {i} {name} 127.0.0.1 2 {self.admin.get(name, 0)} {weight} {weight} "
                f"1 1 0 2 0 0 0 0 - 900{i} - 0 0 - - 0"
                for i, (name, weight) in enumerate(self.weights.items(), start=1)
            ]
            return "\n".join([HEADER, *rows])
        if words[:2] == ["set", "server"] and words[3] == "weight":
            server = words[2].split("/")[1]
            if server not in self.weights:
                return "No such server."
            self.weights[server] = int(words[4])
            return ""
        return "Unknown command."


ROLLOUT = canary(routed=True)


def test_percentages_are_spread_over_each_revisions_servers() -> None:
    runtime = ScriptedRuntime({"old-0": 200, "old-1": 0, "new-0": 0, "new-1": 0, "new-2": 0})
    router = HAProxyRouter(runtime)

    router.set_weight(ROLLOUT, 20, "new", "old")

    assert runtime.weights == {"old-0": 80, "old-1": 80, "new-0": 13, "new-1": 13, "new-2": 13}
    assert router.read_weight(ROLLOUT).canary_weight == 20


def test_servers_in_maintenance_are_left_alone_and_not_counted() -> None:
    runtime = ScriptedRuntime({"old-0": 200, "new-0": 0, "new-1": 7}, admin={"new-1": 1})
    router = HAProxyRouter(runtime)

    router.set_weight(ROLLOUT, 50, "new", "old")

    assert runtime.weights == {"old-0": 100, "new-0": 100, "new-1": 7}
    assert router.read_weight(ROLLOUT).canary_weight == 50


def test_unchanged_weights_are_not_written_again() -> None:
    runtime = ScriptedRuntime({"old-0": 200, "new-0": 0})
    router = HAProxyRouter(runtime)
    router.set_weight(ROLLOUT, 0, "new", "old")

    assert not [line for line in runtime.sent if line.startswith("set")]


def test_a_fresh_router_reads_a_single_weighted_revision_as_no_canary() -> None:
    assert HAProxyRouter(ScriptedRuntime({"old-0": 200, "new-0": 0})).read_weight(ROLLOUT).canary_weight == 0
    unknown = HAProxyRouter(ScriptedRuntime({"old-0": 100, "new-0": 100})).read_weight(ROLLOUT)
    assert (unknown.canary_weight, unknown.verified) == (None, None)


def test_a_missing_backend_is_permanent_and_a_refused_weight_temporary() -> None:
    router = HAProxyRouter(ScriptedRuntime({"old-0": 200}), backend_for=lambda _: "nope")
    with pytest.raises(PermanentError, match="nope"):
        router.read_weight(ROLLOUT)

    class Refusing(ScriptedRuntime):
        def command(self, line: str) -> str:
            return "Backend is using a static LB algorithm." if line.startswith("set") else super().command(line)

    with pytest.raises(TemporaryError, match="static LB"):
        HAProxyRouter(Refusing({"old-0": 200, "new-0": 0})).set_weight(ROLLOUT, 10, "new", "old")


def test_an_unreachable_socket_is_temporary() -> None:
    with pytest.raises(TemporaryError, match="did not answer"):
        HAProxyRuntime("/nonexistent/runtime.sock", timeout=0.2).command("show info")


def test_commands_cannot_be_chained() -> None:
    with pytest.raises(ValueError, match="one command"):
        HAProxyRuntime("/nonexistent").command("show info; shutdown frontend web")


def test_the_config_names_servers_by_revision_and_weights_stable() -> None:
    config = haproxy_config(
        [
            Site(
                "web", "127.0.0.1:8080", {"old": ["127.0.0.1:9001", "127.0.0.1:9002"], "new": ["127.0.0.1:9101"]}, "old"
            )
        ],
        runtime_socket="/run/h.sock",
    )

    assert "stats socket /run/h.sock mode 600 level admin" in config
    assert "    server old-0 127.0.0.1:9001 weight 100" in config
    assert "    server old-1 127.0.0.1:9002 weight 100" in config
    assert "    server new-0 127.0.0.1:9101 weight 0" in config
