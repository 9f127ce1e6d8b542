"""Zero downtime, proven: ≥ 20,000 requests through a canary with promotion, an abort and a blue/green switch.

Only the bad version's own errors (500s stamped with its ``X-Version``) may appear; a refused or reset connection
or a proxy 502/503/504 is the machinery's fault and fails the test. The recreate contrast (stop old, start new)
shows what the same load sees without progressive delivery, and prints the downtime window.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from headway.core.hashing import pod_template_hash
from headway.platforms.local import LocalPlatform
from headway.runtimes.embedded.proxies import Proxies
from headway.spec.load import parse
from headway.spec.rollout import Rollout
from tests.e2e.embedded.harness import DaemonProcess, loadgen, manifest, wait_for

STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": 1}},
    {"setWeight": 50},
    {"pause": {"duration": 1}},
    {"setWeight": 75},
    {"pause": {"duration": 1}},
]
TOTAL = 20_000


def healthy_with(image: str) -> Any:
    return lambda view: view["phase"] == "Healthy" and view["stableImage"] == image and view["readyReplicas"] >= 2


@pytest.mark.slow
@pytest.mark.asyncio
async def test_no_request_fails_through_promotion_abort_and_blue_green_switch(daemon: DaemonProcess) -> None:
    await daemon.call("POST", "/api/v1/apply", manifest("web", steps=STEPS), expect=201)
    await daemon.call("POST", "/api/v1/apply", manifest("bg", strategy="blueGreen"), expect=201)
    web = await daemon.wait_rollout("web", healthy_with("v1"), "web v1 stable")
    bg = await daemon.wait_rollout("bg", healthy_with("v1"), "bg v1 active")
    web_load = loadgen.LoadGenerator(web["trafficUrl"] + "/", rate=600)
    bg_load = loadgen.LoadGenerator(bg["trafficUrl"] + "/", rate=300)
    running = [asyncio.create_task(web_load.run()), asyncio.create_task(bg_load.run())]
    try:
        await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v2"}, expect=200)
        await daemon.wait_rollout("web", healthy_with("v2"), "the v2 canary promoted")

        await daemon.call("POST", "/api/v1/rollouts/web/set-image", {"container": "app", "image": "v3"}, expect=200)
        await daemon.wait_rollout("web", lambda v: v["canaryWeight"] >= 25, "v3 taking traffic")
        await daemon.call("POST", "/api/v1/rollouts/web/abort", expect=200)
        await daemon.wait_rollout(
            "web", lambda v: v["aborted"] and v["canaryWeight"] == 0 and v["stableImage"] == "v2", "the abort"
        )

        await daemon.call("POST", "/api/v1/rollouts/bg/set-image", {"container": "app", "image": "v2"}, expect=200)
        await daemon.wait_rollout("bg", healthy_with("v2"), "the blue/green switch")

        async def enough() -> bool:
            return bool(web_load.stats.sent + bg_load.stats.sent >= TOTAL)

        await wait_for(enough, 120, f"{TOTAL} requests")
        await asyncio.sleep(1.0)  # the old blue/green revision retires after its scale-down delay, under load
    finally:
        web_load.stop()
        bg_load.stop()
        await asyncio.gather(*running)

    web_stats, bg_stats = web_load.stats, bg_load.stats
    print("\nzero downtime:", json.dumps({"canary": web_stats.as_dict(), "blueGreen": bg_stats.as_dict()}))
    assert web_stats.completed + bg_stats.completed >= TOTAL
    assert web_stats.machinery_failures == 0, web_stats.as_dict()
    assert bg_stats.machinery_failures == 0, bg_stats.as_dict()
    assert set(web_stats.version_errors) <= {"v3"}, "only the bad version may fail requests"
    assert not bg_stats.failures
    assert {"v1", "v2", "v3"} <= set(web_stats.versions)
    assert {"v1", "v2"} <= set(bg_stats.versions)


@pytest.mark.asyncio
async def test_recreate_drops_requests_for_a_measurable_window(tmp_path: Path) -> None:
    """The contrast: stop the old version, then start the new one, behind the same proxy and load."""
    state = tmp_path / "state"
    platform = LocalPlatform(state, drain_seconds=0.2)
    proxies = Proxies(state)
    old, new = _rollout("v1"), _rollout("v2")
    old_hash, new_hash = pod_template_hash(old.spec.template), pod_template_hash(new.spec.template)
    try:
        await _serve(platform, proxies, old, old_hash, number=1)
        load = loadgen.LoadGenerator(proxies.ensure(old).url + "/", rate=300)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.0)

        platform.delete_revision(old, old_hash)  # recreate: all old replicas go at once...
        proxies.sync(old, {})
        await _serve(platform, proxies, new, new_hash, number=2)  # ...and only then the new ones start
        await asyncio.sleep(1.0)
        load.stop()
        stats = await running
    finally:
        await asyncio.to_thread(platform.close)
        await asyncio.to_thread(proxies.stop_all)

    print(
        f"\nrecreate: downtime window {stats.downtime():.2f} s, "
        f"{stats.machinery_failures} of {stats.completed} requests failed: {dict(stats.failures)}"
    )
    assert stats.machinery_failures > 0
    assert stats.downtime() > 0.05
    assert {"v1", "v2"} <= set(stats.versions)


def _rollout(image: str) -> Rollout:
    model = parse(json.loads(manifest("recreate", image=image)))
    assert isinstance(model, Rollout)
    return model


async def _serve(platform: LocalPlatform, proxies: Proxies, rollout: Rollout, pod_hash: str, *, number: int) -> None:
    platform.create_revision(rollout, pod_hash, number, 2)

    async def ready() -> bool:
        return len(platform.backends(rollout, pod_hash)) == 2

    await wait_for(ready, 20, f"revision {number} ready")
    proxies.sync(rollout, {pod_hash: platform.backends(rollout, pod_hash)})
    proxies.route_active(rollout, pod_hash)
