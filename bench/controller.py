"""Controller figures against the fidelity emulator: memory per Rollout, API requests per canary step, latency.

Run on demand: ``.venv/bin/python bench/controller.py [--rollouts N]``. Prints one JSON document.

The emulator runs in a child process, so the RSS measured is the controller's alone: baseline after it started
and settled with no Rollouts, then again once N Rollouts have each been reconciled to Healthy and the controller
has been idle for a few seconds (kopf's per-object workers, which hold each object's last event, have exited),
above the baseline, divided by N. Both readings follow a ``gc.collect()``. N defaults to 1,000 (about 1.5 min
here; the fidelity emulator keeps no request history, so it stays O(1) per request). Pass latencies include
waiting for the emulator, which shares the 2 cores and dominates them.
Requests per canary step are counted at the controller's client seam, by verb and resource, for one Gateway API
canary update (setWeight 20 → pause → setWeight 60 → pause → promotion) from the template change until the
controller has been quiet for 2 s after promotion (so writes reporting the last pods' readiness are counted
too), and divided by its four steps. Events posted are counted apart. A second, eight-step update (four
setWeights, four pauses) on a fresh Rollout separates what each further step costs
(``api_writes_per_additional_step``) from what every update pays once, at its start and promotion
(``api_writes_per_update_fixed``: the new ReplicaSet, the Service switches, the 100%-then-0 route at promotion,
the final readiness status).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.kubernetes.harness import GROUP, Kubelet, canary_weight, install, rollout_body  # noqa: E402

from headway.bootstrap.kubernetes import build_controller  # noqa: E402
from headway.kube.client import Body, Kind, KubeClient, rollouts  # noqa: E402
from headway.runtimes.kubernetes.controller import KOPF_IDLE_SECONDS, Controller, ControllerConfig  # noqa: E402

SERVE = "; ".join(
    [
        "import sys",
        "from tests.e2e.kubernetes.harness import serve",
        "print(serve().url, flush=True)",
        "sys.stdin.read()",
    ]
)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class CountingClient(KubeClient):
    """The controller's client, counting each request by verb and resource (``patch replicasets``,
    ``patch rollouts/status``): the seam where the controller's API load is decided."""

    def __init__(self, url: str) -> None:
        super().__init__(KubeClient.for_server(url)._client)
        self.calls: collections.Counter[str] = collections.Counter()

    def writes(self) -> int:
        return sum(n for call, n in self.calls.items() if not call.startswith(("get ", "list ")))

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body | None:
        self.calls[f"get {kind.plural}"] += 1
        return await super().get(kind, name, namespace)

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
    ) -> list[Body]:
        self.calls[f"list {kind.plural}"] += 1
        return await super().list(kind, namespace, labels, fields=fields)

    async def create(self, kind: Kind, body: Body) -> Body:
        self.calls[f"create {kind.plural}"] += 1
        return await super().create(kind, body)

    async def patch(self, kind: Kind, name: str, namespace: str | None, patch: Any, *, status: bool = False) -> Body:
        self.calls[f"patch {kind.plural}{'/status' if status else ''}"] += 1
        return await super().patch(kind, name, namespace, patch, status=status)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        self.calls[f"delete {kind.plural}"] += 1
        await super().delete(kind, name, namespace)


async def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def _healthy_count(client: KubeClient) -> int:
    items = await client.list(rollouts(GROUP), "default")
    return sum(1 for item in items if (item.get("status") or {}).get("phase") == "Healthy")


async def measure(url: str, count: int) -> dict[str, Any]:
    client = KubeClient.for_server(url)
    counting = CountingClient(url)
    controller = build_controller(ControllerConfig(server=url, leader_election=False), client=counting)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(controller.run(stop=stop, ready=ready))
    await ready.wait()
    await asyncio.sleep(2)
    gc.collect()
    baseline = rss_kib()

    started = time.monotonic()
    async with Kubelet(client):
        for index in range(count):
            body = rollout_body(f"app{index}", steps=[{"setWeight": 50}])
            for field in ("trafficRouting", "canaryService", "stableService", "scaleDownDelaySeconds"):
                body["spec"]["strategy"]["canary"].pop(field)  # a replica-ratio canary
            await client.create(rollouts(GROUP), body)
        await _until(lambda: _healthy_count_is(client, count), timeout=60 + 2.0 * count)
    settle_seconds = time.monotonic() - started
    await asyncio.sleep(KOPF_IDLE_SECONDS + 2)
    gc.collect()
    loaded = rss_kib()
    latencies = sorted(controller.latencies)

    # Gateway API canary updates, counted at the controller's client: the four steps, and a longer
    # canary of eight, whose difference is what each further step costs (the start and the promotion are paid
    # once per update, whatever the number of steps).
    short = await _canary_update(client, counting, controller, "web", SHORT_STEPS)
    long = await _canary_update(client, counting, controller, "web-long", LONG_STEPS)
    stop.set()
    await task
    await controller.client.close()
    await client.close()
    reads, writes, events, calls, update_latencies = short
    extra_steps = len(LONG_STEPS) - len(SHORT_STEPS)
    marginal = (long[1] - writes) / extra_steps
    return {
        "rollouts": count,
        "rss_baseline_mib": round(baseline / 1024, 1),
        "rss_loaded_mib": round(loaded / 1024, 1),
        "rss_per_rollout_kib": round((loaded - baseline) / count, 1),
        "seconds_to_all_healthy": round(settle_seconds, 1),
        "passes": len(latencies),
        "reconcile_latency_ms_p50": round(1000 * statistics.median(latencies), 1),
        "reconcile_latency_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "canary_update": {"steps": 4, "reads": reads, "writes": writes, "events_posted": events},
        "canary_update_requests": dict(sorted(calls.items())),
        "api_reads_per_canary_step": round(reads / 4, 1),
        "api_writes_per_canary_step": round(writes / 4, 1),
        "events_per_canary_step": round(events / 4, 1),
        "long_canary_update": {"steps": len(LONG_STEPS), "reads": long[0], "writes": long[1], "events_posted": long[2]},
        "long_canary_update_requests": dict(sorted(long[3].items())),
        "api_writes_per_canary_step_long": round(long[1] / len(LONG_STEPS), 2),
        "api_writes_per_additional_step": round(marginal, 2),
        "api_writes_per_update_fixed": round(writes - marginal * len(SHORT_STEPS), 1),
        "canary_update_latency_ms_p50": round(1000 * statistics.median(update_latencies), 1),
        "canary_update_latency_ms_max": round(1000 * update_latencies[-1], 1),
    }


SHORT_STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "1s"}},
    {"setWeight": 60},
    {"pause": {"duration": "1s"}},
]
LONG_STEPS: list[dict[str, Any]] = [
    step for weight in (10, 25, 50, 75) for step in ({"setWeight": weight}, {"pause": {"duration": "1s"}})
]

Counts = tuple[int, int, int, "collections.Counter[str]", list[float]]


async def _canary_update(
    client: KubeClient, counting: CountingClient, controller: Controller, name: str, steps: list[dict[str, Any]]
) -> Counts:
    """One update of a new Rollout ``name`` through ``steps``: (reads, writes, events, calls, pass latencies)."""
    await install(client, name)
    await client.create(rollouts(GROUP), rollout_body(name, steps=steps))
    async with Kubelet(client):
        await _until(lambda: _phase_is(client, name, "Healthy"), timeout=120)
        await _quiet(counting, seconds=2.0)
        before = dict(controller.client.requests)
        calls_before = collections.Counter(counting.calls)
        passes_before = len(controller.latencies)
        old_hash = ((await client.get(rollouts(GROUP), name, "default")) or {}).get("status", {}).get("currentPodHash")
        template = rollout_body(name, image="example/web:2")["spec"]["template"]
        await client.patch(rollouts(GROUP), name, "default", {"spec": {"template": template}})
        await _until(lambda: _promoted(client, name, old_hash), timeout=120)
        await _quiet(counting, seconds=2.0)
    after = dict(controller.client.requests)
    return (
        after.get("read", 0) - before.get("read", 0),
        after.get("write", 0) - before.get("write", 0),
        after.get("event", 0) - before.get("event", 0),
        counting.calls - calls_before,
        sorted(list(controller.latencies)[passes_before:]),
    )


async def _quiet(counting: CountingClient, *, seconds: float) -> None:
    """Until the controller has made no write for ``seconds`` (reads go on: passes that find nothing to do)."""
    last, since = counting.writes(), time.monotonic()
    while time.monotonic() - since < seconds:
        await asyncio.sleep(0.2)
        if counting.writes() != last:
            last, since = counting.writes(), time.monotonic()


async def _healthy_count_is(client: KubeClient, count: int) -> bool:
    return await _healthy_count(client) >= count


async def _phase_is(client: KubeClient, name: str, phase: str) -> bool:
    obj = await client.get(rollouts(GROUP), name, "default")
    return ((obj or {}).get("status") or {}).get("phase") == phase


async def _promoted(client: KubeClient, name: str, old_hash: str | None) -> bool:
    obj = await client.get(rollouts(GROUP), name, "default")
    status = (obj or {}).get("status") or {}
    return (
        status.get("phase") == "Healthy"
        and status.get("currentPodHash") != old_hash
        and status.get("stableRS") == status.get("currentPodHash")
        and await canary_weight(client, name) == 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    arguments = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        result = asyncio.run(measure(url, arguments.rollouts))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
