"""The controller's writes during one canary update: none of them is a no-op.

Every request the controller makes goes through its `KubeClient`; a recording subclass sees each write with its
body. A write that changes nothing (a status equal to the one just written, a scale to the replicas the
ReplicaSet already has, a route set to the weights it already carries) costs the API server a write and every
watcher an event: none is allowed. How many writes an update takes is bench/controller.py's figure (timing
decides a few of them); the bound here is loose on purpose and only catches a doubling.
"""

from __future__ import annotations

from typing import Any

import pytest

from headway.kube.client import Body, Kind, KubeClient, rollouts
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP, Kubelet, canary_weight, eventually, install, rollout_body, running
from tests.e2e.kubernetes.harness import status as status_of

pytestmark = pytest.mark.asyncio

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "1s"}},
    {"setWeight": 60},
    {"pause": {"duration": "1s"}},
]


class RecordingClient(KubeClient):
    """The controller's client, keeping every write (verb, resource, name, body) in order."""

    def __init__(self, url: str) -> None:
        super().__init__(KubeClient.for_server(url)._client)
        self.writes: list[tuple[str, str, str, Any]] = []

    async def create(self, kind: Kind, body: Body) -> Body:
        self.writes.append(("create", kind.plural, body.get("metadata", {}).get("name", ""), body))
        return await super().create(kind, body)

    async def patch(self, kind: Kind, name: str, namespace: str | None, patch: Any, *, status: bool = False) -> Body:
        self.writes.append(("patch", f"{kind.plural}{'/status' if status else ''}", name, patch))
        return await super().patch(kind, name, namespace, patch, status=status)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        self.writes.append(("delete", kind.plural, name, None))
        await super().delete(kind, name, namespace)


def _no_op_writes(writes: list[tuple[str, str, str, Any]]) -> list[str]:
    """Writes that set what the previous write of the same object had already set."""
    found: list[str] = []
    last_status: dict[str, Any] = {}
    replicas: dict[str, int] = {}
    routes: dict[str, Any] = {}
    for verb, plural, name, body in writes:
        if plural == "rollouts/status":
            written = next(op["value"] for op in body if op["path"] == "/status")
            if last_status.get(name) == written:
                found.append(f"status of {name} written unchanged")
            last_status[name] = written
        elif plural == "replicasets":
            wanted = int(body["spec"]["replicas"])
            if verb == "patch" and replicas.get(name) == wanted:
                found.append(f"{name} scaled to the {wanted} replicas it had")
            replicas[name] = wanted
        elif plural == "httproutes":
            rules = body.get("spec", {}).get("rules")
            if routes.get(name) == rules:
                found.append(f"route {name} set to the weights it had")
            routes[name] = rules
    return found


async def test_a_canary_update_writes_nothing_twice(api: ApiServer, client: KubeClient) -> None:
    await install(client)
    await client.create(rollouts(GROUP), rollout_body(steps=STEPS))
    recording = RecordingClient(api.url)
    async with running(api, recording, leader_election=False) as controller, Kubelet(client):
        await eventually(lambda: _phase_is(client, "Healthy"), what="the first revision Healthy")
        first = (await status_of(client))["currentPodHash"]
        recording.writes.clear()
        template = rollout_body(image="example/web:2")["spec"]["template"]
        await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})
        await eventually(lambda: _promoted(client, first), timeout=30, what="the update promoted")
        await eventually(lambda: _ready_counted(client), what="the last pods' readiness in the status")
        passes = len(controller.latencies)

    writes = [w for w in recording.writes if w[1] != "events"]
    assert _no_op_writes(writes) == []
    status_writes = sum(1 for w in writes if w[1] == "rollouts/status")
    assert status_writes <= passes
    assert len(writes) <= 20, [f"{verb} {plural} {name}" for verb, plural, name, _ in writes]


async def _phase_is(client: KubeClient, phase: str) -> bool:
    return (await status_of(client)).get("phase") == phase


async def _promoted(client: KubeClient, first: str) -> bool:
    current = await status_of(client)
    return (
        current.get("phase") == "Healthy"
        and current.get("currentPodHash") != first
        and current.get("stableRS") == current.get("currentPodHash")
        and await canary_weight(client) == 0
    )


async def _ready_counted(client: KubeClient) -> bool:
    current = await status_of(client)
    return current.get("readyReplicas") == current.get("replicas") == 2
