"""The HAProxy router's read-back on canned Runtime API answers: roles it did not write come from the status,
and an answer it cannot parse is its error (an `AdapterError`), never a crash of the pass."""

from __future__ import annotations

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import AdapterError
from headway.routers.haproxy import HAProxyRouter, HAProxyRuntime
from tests.scenarios.harness import canary

HEADER = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_port"


class CannedRuntime(HAProxyRuntime):
    """Answers ``show servers state`` with fixed lines (no socket)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("/nonexistent")
        self.lines = lines

    def command(self, line: str) -> str:
        assert line.startswith("show servers state "), line
        return "\n".join([HEADER, *self.lines])


def server(name: str, weight: int | str) -> str:
    return f"3 web 1 {name} 127.0.0.1 2 0 {weight} 1 9001"


def test_a_fresh_router_reads_the_split_with_the_roles_the_status_names() -> None:
    """After a restart the router has no roles of its own: two weighted revisions read as "cannot tell", and the
    core used to trust its last write. With the status's roles the split is read, and its difference is drift."""
    router = HAProxyRouter(CannedRuntime([server("old-1", 180), server("new-1", 20)]), lambda _: "web")
    rollout = canary(routed=True)

    assert router.read_weight(rollout).canary_weight is None  # no roles, no expectation: cannot tell
    state = router.read_state(rollout, ExpectedRouting(canary_weight=50, canary_hash="new", stable_hash="old"))

    assert state.canary_weight == 10 and state.verified is True
    (drift,) = state.drift
    assert drift.found == "canary weight 10"


@pytest.mark.parametrize("line", [server("old-1", "lots"), "3 web 1 old-1"], ids=["text-weight", "short-line"])
def test_an_unreadable_answer_is_an_adapter_error(line: str) -> None:
    router = HAProxyRouter(CannedRuntime([line]), lambda _: "web")

    with pytest.raises(AdapterError, match="unreadable line"):
        router.read_state(canary(routed=True), None)
