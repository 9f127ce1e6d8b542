"""The controller against a real Kubernetes API server: requests per update, first-step and Healthy latency.

Run on demand: ``.venv/bin/python bench/apiserver.py [--rollouts N]`` (about 2.5 min). Prints one JSON document
and writes ``bench/results/apiserver.json``. Needs the test control plane the real-server tests use
(`tests.e2e.realkube`); exits with a message where it is absent.

The reference update: a 5-replica canary without a router (setWeight 20, pause 10s, setWeight 60, pause 10s),
revision 1 Healthy first, then a new image. The controller runs in this process as the ``headway-controller``
ServiceAccount (deploy/base's RBAC), so its requests are the audit log's lines with that user name: counted from
the image change until it is Healthy plus 2 s (so the writes reporting the last pods' readiness are in), by verb
and resource, reads apart from writes, the leader-election Lease apart from the rest, and watches apart (one
long request each, not per event). ``first_step_seconds``: from the edit until the status of the new revision
says step 1 (the setWeight done); ``healthy_seconds``: until Healthy on the new revision, against the pauses' sum
(20 s); ``timeline``: each change of phase, step and ReplicaSet pods (desired/available) as the bench saw it.

``fleet``: N Rollouts (default 200) updated at once (`fleet`): seconds until all are Healthy, the controller's
passes and requests, and its memory per Rollout; ``seconds_deployments_same_churn`` is the same pod churn done by
the Deployment controller alone, the pace of this control plane. ``HEADWAY_BENCH_TRACE=1`` also prints where the
fleet's retained Python memory was allocated (tracemalloc; slower).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.realkube.cluster import (  # noqa: E402
    GROUP,
    RealCluster,
    control_plane,
    healthy_on,
    kubectl,
    missing,
    replica_sets,
    rollout_body,
    running,
    set_image,
    status,
    template,
)

from headway.kube.client import DEPLOYMENTS, REPLICA_SETS, KubeClient, rollouts  # noqa: E402

USER = "system:serviceaccount:headway-system:headway-controller"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "10s"}},
    {"setWeight": 60},
    {"pause": {"duration": "10s"}},
]
PAUSES_SECONDS = 20.0
READS = {"get", "list"}
TRACE = bool(os.environ.get("HEADWAY_BENCH_TRACE"))
"""Also print what the fleet's growth is made of (tracemalloc's top allocation sites, per Rollout), to stderr."""


def count_requests(audit: Path, offset: int) -> dict[str, Any]:
    """The controller's requests in the audit log after byte ``offset``, grouped."""
    by_request: collections.Counter[str] = collections.Counter()
    reads = writes = lease = watches = conflicts = 0
    with audit.open("rb") as log:
        log.seek(offset)
        for line in log:
            entry = json.loads(line)
            if entry.get("stage") != "ResponseComplete" or entry.get("user", {}).get("username") != USER:
                continue
            ref = entry.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            verb = entry.get("verb", "")
            if resource == "leases":
                lease += 1
                continue
            if verb == "watch":
                watches += 1
                continue
            by_request[f"{verb} {resource}"] += 1
            conflicts += (entry.get("responseStatus") or {}).get("code") == 409
            if verb in READS:
                reads += 1
            else:
                writes += 1
    return {
        "total": reads + writes,
        "reads": reads,
        "writes": writes,
        "by_request": dict(sorted(by_request.items())),
        "conflicts_409": conflicts,
        "lease_requests": lease,
        "watch_requests_closed": watches,
    }


def _summary(current: dict[str, Any], sets: list[dict[str, Any]]) -> str:
    """One line of what a user watches: phase, step, pause and each ReplicaSet's desired/ready pods."""
    pods = " ".join(
        f"{rs['metadata']['name'].rsplit('-', 1)[-1][:5]}:{rs['spec'].get('replicas', 0)}/"
        f"{(rs.get('status') or {}).get('availableReplicas', 0)}"
        for rs in sorted(sets, key=lambda rs: rs["metadata"]["creationTimestamp"])
    )
    paused = "paused" if current.get("pauseConditions") else ""
    return f"{current.get('phase')} step={current.get('currentStepIndex')} {paused} {pods}"


def rss_kib() -> int:
    """This process's resident memory after a full collection and glibc's ``malloc_trim`` (which hands freed heap
    pages back: without it the peak of the update, not what is kept, decides the figure)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _fleet_healthy(admin: KubeClient, namespace: str, image: str) -> int:
    """How many of the namespace's Rollouts are Healthy on ``image`` (status, and its stable ReplicaSet's pods)."""
    sets = {rs["metadata"]["name"]: rs for rs in await admin.list(REPLICA_SETS, namespace)}
    healthy = 0
    for obj in await admin.list(rollouts(GROUP), namespace):
        current = obj.get("status") or {}
        if current.get("phase") != "Healthy" or str(current.get("observedGeneration")) != str(
            obj["metadata"].get("generation")
        ):
            continue
        rs = sets.get(f"{obj['metadata']['name']}-{current.get('stableRS')}")
        if rs is None or rs["spec"]["template"]["spec"]["containers"][0]["image"] != image:
            continue
        healthy += int((rs.get("status") or {}).get("availableReplicas") or 0) == int(obj["spec"]["replicas"])
    return healthy


async def _until_all_healthy(admin: KubeClient, namespace: str, image: str, count: int, timeout: float) -> float:
    started = time.perf_counter()
    while await _fleet_healthy(admin, namespace, image) < count:
        if time.perf_counter() - started > timeout:
            done = await _fleet_healthy(admin, namespace, image)
            raise SystemExit(f"bench/apiserver.py: only {done} of {count} Rollouts Healthy on {image} in {timeout} s")
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def _deployments_done(admin: KubeClient, namespace: str, image: str) -> int:
    done = 0
    for obj in await admin.list(DEPLOYMENTS, namespace):
        spec, current = obj["spec"], obj.get("status") or {}
        wanted = int(spec["replicas"])
        done += (
            spec["template"]["spec"]["containers"][0]["image"] == image
            and int(current.get("observedGeneration") or 0) >= int(obj["metadata"]["generation"])
            and int(current.get("updatedReplicas") or 0) == wanted
            and int(current.get("availableReplicas") or 0) == wanted
            and int(current.get("replicas") or 0) == wanted
        )
    return done


async def deployments(cluster: RealCluster, admin: KubeClient, count: int) -> float:
    """The cluster's own pace for the same pod churn: ``count`` 2-replica Deployments (the Deployment
    controller's rolling update, no Headway) updated at once, seconds until all run the new image only. The
    control plane here (one kube-controller-manager with its default client rate limit, kwok's fake node, on the
    same cores) bounds any controller's fleet update: this is that bound."""
    namespace = "deployments"
    kubectl(cluster.admin, "create", "namespace", namespace)
    for index in range(count):
        name = f"app{index}"
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template(name, "x:1")},
        }
        await admin.create(DEPLOYMENTS, body)
    while await _deployments_done(admin, namespace, "x:1") < count:
        await asyncio.sleep(0.5)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            admin.patch(DEPLOYMENTS, f"app{i}", namespace, {"spec": {"template": template(f"app{i}", "x:2")}})
            for i in range(count)
        )
    )
    while await _deployments_done(admin, namespace, "x:2") < count:
        await asyncio.sleep(0.5)
    seconds = time.perf_counter() - started
    kubectl(cluster.admin, "delete", "namespace", namespace, "--wait=false")
    return seconds


def _deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (dicts, lists, tuples, sets, strings): what a cache keeps."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(_deep_size(item, seen) for item in obj)
    return size


async def _deploy(admin: KubeClient, namespace: str, names: list[str], steps: list[dict[str, Any]]) -> None:
    for name in names:
        body = rollout_body(namespace, name, replicas=2, strategy={"canary": {"steps": steps}})
        body["spec"]["selector"] = {"matchLabels": {"app": name}}
        body["spec"]["template"] = template(name, "example/web:1")
        await admin.create(rollouts(GROUP), body)


async def _update(admin: KubeClient, namespace: str, names: list[str]) -> float:
    """Edit every Rollout's image at once; seconds until all are Healthy on it."""
    started = time.perf_counter()
    await asyncio.gather(*(set_image(admin, namespace, "example/web:2", name=name) for name in names))
    await _until_all_healthy(admin, namespace, "example/web:2", len(names), 600)
    return time.perf_counter() - started


async def fleet(cluster: RealCluster, admin: KubeClient, count: int) -> dict[str, Any]:
    """``count`` Rollouts (2 replicas; setWeight 50, pause 2s) deployed, then all updated at once: seconds, the
    controller's passes and requests for the update, and its memory per Rollout.

    Memory: the RSS growth from a baseline to the end, over ``count``. The baseline is taken after a warm-up (20
    Rollouts deployed, updated and deleted, so the pass threads, imports and connection pools exist) and with no
    Rollouts; the end once the fleet is Healthy and the controller idle; both after `rss_kib`'s collection and
    trim. What the ReplicaSet cache holds is measured apart (its objects' deep size)."""
    namespace = "fleet"
    kubectl(cluster.admin, "create", "namespace", namespace)
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
    async with running(cluster, namespace, lease_seconds=15.0) as controller:
        warm = [f"warm{index}" for index in range(20)]
        await _deploy(admin, namespace, warm, steps)
        await _until_all_healthy(admin, namespace, "example/web:1", len(warm), 600)
        await _update(admin, namespace, warm)
        kubectl(cluster.admin, "delete", "rollouts.headway.dev", "--all", "-n", namespace, "--wait=true")
        while controller.workers:
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)
        baseline = rss_kib()
        if TRACE:
            tracemalloc.start(8)
            before = tracemalloc.take_snapshot()
        names = [f"app{index}" for index in range(count)]
        await _deploy(admin, namespace, names, steps)
        deployed = await _until_all_healthy(admin, namespace, "example/web:1", count, 600)
        await asyncio.sleep(2.0)
        offset = cluster.audit_log.stat().st_size
        passes_before = len(controller.latencies)
        updated = await _update(admin, namespace, names)
        latencies = sorted(list(controller.latencies)[passes_before:])
        await asyncio.sleep(3.0)  # idle: kopf's per-object workers exit
        loaded = rss_kib()
        if TRACE:
            grown = tracemalloc.take_snapshot().compare_to(before, "traceback")
            for stat in grown[:12]:
                print(f"{stat.size_diff / 1024 / count:8.1f} KiB/Rollout {stat.count_diff:+8d} blocks", file=sys.stderr)
                for line in stat.traceback.format()[-8:]:
                    print("    " + line, file=sys.stderr)
            tracemalloc.stop()
        cached = _deep_size(controller.replica_sets._sets)
    await asyncio.sleep(1.0)
    requests = count_requests(cluster.audit_log, offset)
    return {
        "rollouts": count,
        "update": "2 replicas each, canary without router: setWeight 50, pause 2s; all edited at once",
        "seconds_to_all_healthy_first_deploy": round(deployed, 1),
        "seconds_to_all_healthy_after_update": round(updated, 1),
        "passes": len(latencies),
        "pass_seconds_p50": round(statistics.median(latencies), 3) if latencies else None,
        "pass_seconds_p99": round(latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
        "requests_per_rollout": round(requests["total"] / count, 1),
        "requests": requests,
        "rss_baseline_mib": round(baseline / 1024, 1),
        "rss_loaded_mib": round(loaded / 1024, 1),
        "rss_per_rollout_kib": round((loaded - baseline) / count, 1),
        "replica_set_cache_per_rollout_kib": round(cached / 1024 / count, 1),
    }


async def main(fleet_size: int) -> dict[str, Any]:
    reason = missing()
    if reason is not None:
        raise SystemExit(f"bench/apiserver.py: {reason}")
    with tempfile.TemporaryDirectory(prefix="headway-apiserver-") as state, control_plane(Path(state)) as cluster:
        namespace = "bench"
        kubectl(cluster.admin, "create", "namespace", namespace)
        admin = KubeClient.from_kubeconfig(cluster.admin, field_manager="bench")
        try:
            body = rollout_body(namespace, replicas=5, strategy={"canary": {"steps": STEPS}})
            await admin.create(rollouts(GROUP), body)
            async with running(cluster, namespace, lease_seconds=15.0):
                while not await healthy_on(admin, namespace, "example/web:1"):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # revision 1's last readiness writes
                old_hash = (await status(admin, namespace)).get("currentPodHash")
                offset = cluster.audit_log.stat().st_size
                started = time.perf_counter()
                await set_image(admin, namespace, "example/web:2")
                first_step = healthy = None
                timeline: list[str] = []
                seen = ""
                while healthy is None:
                    current = await status(admin, namespace)
                    now = time.perf_counter() - started
                    sets = await replica_sets(admin, namespace)
                    summary = _summary(current, sets)
                    if summary != seen:
                        timeline.append(f"{now:7.3f} {summary}")
                        seen = summary
                    on_new = current.get("currentPodHash") not in (None, old_hash)
                    if first_step is None and on_new and (current.get("currentStepIndex") or 0) >= 1:
                        first_step = now
                    if await healthy_on(admin, namespace, "example/web:2"):
                        healthy = now
                    await asyncio.sleep(0.02)
                await asyncio.sleep(2.0)
            await asyncio.sleep(1.0)  # the audit log is written asynchronously
            requests = count_requests(cluster.audit_log, offset)
            many = await fleet(cluster, admin, fleet_size) if fleet_size else None
            if many is not None:
                many["seconds_deployments_same_churn"] = round(await deployments(cluster, admin, fleet_size), 1)
        finally:
            await admin.close()
    return {
        "update": "5 replicas, canary without router: setWeight 20, pause 10s, setWeight 60, pause 10s",
        "requests": requests,
        "first_step_seconds": round(first_step or -1.0, 3),
        "healthy_seconds": round(healthy, 3),
        "healthy_after_pauses_seconds": round(healthy - PAUSES_SECONDS, 3),
        "targets": {"total_requests": 26, "first_step_seconds": 0.2, "healthy_after_pauses_seconds": 0.5},
        "timeline": timeline,
        "fleet": many,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200, help="Rollouts updated at once (0: skip that part)")
    result = asyncio.run(main(parser.parse_args().rollouts))
    text = json.dumps(result, indent=2)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "apiserver.json").write_text(text + "\n")
