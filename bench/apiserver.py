"""The controller against a real Kubernetes API server: requests per update, first-step and Healthy latency.

Run on demand: ``.venv/bin/python bench/apiserver.py``. Prints one JSON document and writes
``bench/results/apiserver.json``. Needs the test control plane the real-server tests use (`tests.e2e.realkube`);
exits with a message where it is absent.

The reference update: a 5-replica canary without a router (setWeight 20, pause 10s, setWeight 60, pause 10s),
revision 1 Healthy first, then a new image. The controller runs in this process as the ``headway-controller``
ServiceAccount (deploy/base's RBAC), so its requests are the audit log's lines with that user name: counted from
the image change until it is Healthy plus 2 s (so the writes reporting the last pods' readiness are in), by verb
and resource, reads apart from writes, the leader-election Lease apart from the rest, and watches apart (one
long request each, not per event). ``first_step_seconds``: from the edit until the status says step 1 (the
setWeight done); ``healthy_seconds``: until Healthy on the new revision, against the pauses' sum (20 s).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.realkube.cluster import (  # noqa: E402
    GROUP,
    control_plane,
    healthy_on,
    kubectl,
    missing,
    rollout_body,
    running,
    set_image,
    status,
)

from headway.kube.client import KubeClient, rollouts  # noqa: E402

USER = "system:serviceaccount:headway-system:headway-controller"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "10s"}},
    {"setWeight": 60},
    {"pause": {"duration": "10s"}},
]
PAUSES_SECONDS = 20.0
READS = {"get", "list"}


def count(audit: Path, offset: int) -> dict[str, Any]:
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


async def main() -> dict[str, Any]:
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
                offset = cluster.audit_log.stat().st_size
                started = time.perf_counter()
                await set_image(admin, namespace, "example/web:2")
                first_step = healthy = None
                while healthy is None:
                    current = await status(admin, namespace)
                    now = time.perf_counter() - started
                    if first_step is None and (current.get("currentStepIndex") or 0) >= 1:
                        first_step = now
                    if await healthy_on(admin, namespace, "example/web:2"):
                        healthy = now
                    await asyncio.sleep(0.02)
                await asyncio.sleep(2.0)
            await asyncio.sleep(1.0)  # the audit log is written asynchronously
            requests = count(cluster.audit_log, offset)
        finally:
            await admin.close()
    return {
        "update": "5 replicas, canary without router: setWeight 20, pause 10s, setWeight 60, pause 10s",
        "requests": requests,
        "first_step_seconds": round(first_step or -1.0, 3),
        "healthy_seconds": round(healthy, 3),
        "healthy_after_pauses_seconds": round(healthy - PAUSES_SECONDS, 3),
        "targets": {"total_requests": 26, "first_step_seconds": 0.2, "healthy_after_pauses_seconds": 0.5},
        "not_measured": "200 Rollouts updated at once (memory per Rollout): see bench/controller.py (emulator)",
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    text = json.dumps(result, indent=2)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "apiserver.json").write_text(text + "\n")
