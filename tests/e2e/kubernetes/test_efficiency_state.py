"""What the controller keeps per Rollout between passes, and when an event it sees during a pass wakes it again."""

from __future__ import annotations

import json
import sys
from typing import Any

from headway.bootstrap.kubernetes import build_controller
from headway.runtimes.kubernetes.controller import Controller, ControllerConfig, _Worker
from headway.runtimes.kubernetes.packed import LAST_APPLIED, pack, unpack
from tests.e2e.kubernetes.harness import rollout_body


def _deep_size(value: Any) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_deep_size(item) for item in value)
    return size


def test_a_packed_body_decodes_to_the_body_without_what_no_pass_reads_and_is_a_fraction_of_it() -> None:
    body = rollout_body(steps=[{"setWeight": 20}, {"pause": {}}])
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    body["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(body), "team": "web"}
    body["status"] = {"phase": "Healthy", "conditions": [{"type": "Available", "status": "True"}] * 3}

    packed = pack(body)
    restored = unpack(packed)

    expected = json.loads(json.dumps(body))
    del expected["metadata"]["managedFields"]
    expected["metadata"]["annotations"] = {"team": "web"}
    assert restored == expected
    assert "managedFields" in body["metadata"] and LAST_APPLIED in body["metadata"]["annotations"], "left alone"
    assert len(packed) * 5 < _deep_size(restored), (len(packed), _deep_size(restored))


def _controller() -> Controller:
    return build_controller(ControllerConfig(server="http://127.0.0.1:9", leader_election=False))


def test_only_a_foreign_rollout_event_held_during_a_pass_wakes_the_worker_after_it() -> None:
    controller = _controller()
    controller._own_writes["default/web"] = "42"

    echo = _Worker(held=["42"], urgent=False)
    controller._release("default/web", echo)
    assert not echo.wake.is_set() and echo.held is None, "the echo of the pass's own status write"

    edited = _Worker(held=["42", "43"], urgent=False)
    controller._release("default/web", edited)
    assert edited.wake.is_set() and edited.urgent, "a user's edit (or promote) arrived during the pass"
