"""The proxy router and provider against a live proxy process; the haproxy router against real HAProxy."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from headway.core.errors import PermanentError, TemporaryError
from headway.providers.base import MeasureContext
from headway.providers.proxy import ProxyProvider
from headway.routers.haproxy import HAProxyRouter, HAProxyRuntime, RuntimeAPIError, Site, haproxy_config
from headway.routers.proxy import ProxyRouter
from headway.spec.analysis import Metric
from headway.spec.rollout import HeaderRoutingMatch, StringMatch
from tests.e2e.proxy.conftest import require_binary
from tests.e2e.proxy.processes import TOKEN, Running, call
from tests.ports import free_port
from tests.scenarios.harness import canary

ROLLOUT = canary(routed=True)
CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC))


def metric(**config: object) -> Metric:
    return Metric.model_validate({"name": "errors", "provider": {"plugin": {"proxy": config}}})


async def hit(url: str, count: int) -> Counter[str]:
    async with aiohttp.ClientSession() as session:
        got: Counter[str] = Counter()
        for _ in range(count):
            async with session.get(url) as response:
                got[await response.text()] += 1
        return got


@pytest.mark.asyncio
async def test_the_proxy_router_drives_the_live_split(running_proxy: Running) -> None:
    router = ProxyRouter(running_proxy.admin, token=TOKEN)

    await asyncio.to_thread(router.set_weight, ROLLOUT, 25, "new", "old")
    got = await hit(f"http://{running_proxy.listen}/", 40)
    state = await asyncio.to_thread(router.read_state, ROLLOUT, None)

    assert got["v2"] == 10
    assert (state.canary_weight, state.verified) == (25, True)

    match = [HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes"))]
    await asyncio.to_thread(router.set_header_route, ROLLOUT, "qa", match)
    assert call("GET", running_proxy.admin + "/state")[1]["headerRoutes"][0]["name"] == "qa"
    await asyncio.to_thread(router.restore, ROLLOUT)
    restored = call("GET", running_proxy.admin + "/state")[1]
    assert (restored["canary"], restored["weights"], restored["headerRoutes"]) == (None, {"old": 100}, [])
    assert set(await hit(f"http://{running_proxy.listen}/", 6)) == {"v1a", "v1b"}


def test_the_proxy_router_reports_a_down_proxy_as_temporary() -> None:
    router = ProxyRouter(f"http://127.0.0.1:{free_port()}", timeout=0.5)

    with pytest.raises(TemporaryError, match="did not answer"):
        router.read_state(ROLLOUT, None)


def test_the_proxy_router_reports_refused_input_as_permanent(running_proxy: Running) -> None:
    router = ProxyRouter(running_proxy.admin, token=TOKEN)

    with pytest.raises(PermanentError, match=r"weights.not a hash!: expected a name"):
        router.set_weight(ROLLOUT, 10, "new", "not a hash!")
    with pytest.raises(PermanentError, match="no embedded proxy is configured for rollout default/web"):
        ProxyRouter({}).read_state(ROLLOUT, None)


@pytest.mark.asyncio
async def test_the_proxy_provider_counts_bad_events_per_role(running_proxy: Running) -> None:
    call("PATCH", running_proxy.admin + "/state", {"weights": {"old": 50, "new": 50}})
    async with aiohttp.ClientSession() as session:
        for path in ["/status/500", "/sleep/120", "/", "/"] * 3:
            async with session.get(f"http://{running_proxy.listen}{path}") as response:
                await response.read()

    result = await ProxyProvider(token=TOKEN).start(metric(address=running_proxy.admin, latencyCut="100ms"), CONTEXT)

    assert result.error is None, result.error
    canary, stable = result.value["canary"], result.value["stable"]
    assert canary["requests"] + stable["requests"] == 12
    assert canary["errors"] + stable["errors"] == 3
    assert canary["slow"] + stable["slow"] == 3
    assert result.value["latencyCut"] == 0.1
    assert canary["errorRate"] == canary["errors"] / canary["requests"]


@pytest.mark.asyncio
async def test_the_proxy_provider_turns_failures_into_error_results() -> None:
    provider = ProxyProvider(timeout=0.5)

    down = await provider.start(metric(address=f"http://127.0.0.1:{free_port()}"), CONTEXT)
    bad = await provider.start(metric(address="http://127.0.0.1:1", window="soon"), CONTEXT)
    missing = await provider.start(metric(), CONTEXT)

    assert down.error is not None and "did not answer" in down.error
    assert bad.error is not None and "window" in bad.error
    assert missing.error is not None and "address" in missing.error


# --- HAProxy -------------------------------------------------------------------------------------------------


@pytest.fixture
def haproxy(tmp_path: Path, backends: dict[str, Running]) -> Iterator[tuple[HAProxyRuntime, str]]:
    binary = require_binary("haproxy")
    socket_path = tmp_path / "runtime.sock"
    listen = f"127.0.0.1:{free_port()}"
    site = Site(
        name="web",
        listen=listen,
        servers={"old": [backends["v1a"].address, backends["v1b"].address], "new": [backends["v2"].address]},
        stable="old",
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config([site], runtime_socket=socket_path))
    process = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runtime = HAProxyRuntime(socket_path, timeout=1.0)
    try:
        for _ in range(100):
            if socket_path.exists():
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            subprocess.run(["sleep", "0.05"], check=True)
        yield runtime, listen
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


@pytest.mark.asyncio
async def test_the_haproxy_router_sets_weights_that_read_back_and_split(haproxy: tuple[HAProxyRuntime, str]) -> None:
    runtime, listen = haproxy
    router = HAProxyRouter(runtime)

    assert router.read_weight(ROLLOUT).canary_weight == 0
    router.set_weight(ROLLOUT, 20, "new", "old")
    got = await hit(f"http://{listen}/", 200)

    assert router.read_weight(ROLLOUT).canary_weight == 20
    assert 36 <= got["v2"] <= 44  # HAProxy interleaves from wherever its cycle was when the weights changed
    router.restore(ROLLOUT)
    assert router.read_weight(ROLLOUT).canary_weight == 0


@pytest.mark.asyncio
async def test_haproxy_servers_are_added_drained_and_removed_without_reload(
    haproxy: tuple[HAProxyRuntime, str], backends: dict[str, Running]
) -> None:
    runtime, listen = haproxy
    runtime.add_server("web", "new-1", backends["v2"].address, weight=200)
    runtime.set_weight("web", "old-0", 0)
    runtime.set_weight("web", "old-1", 0)
    assert set(await hit(f"http://{listen}/", 4)) == {"v2"}

    runtime.set_state("web", "new-1", "drain")
    assert next(s for s in runtime.servers("web") if s.name == "new-1").draining
    runtime.remove_server("web", "new-1")

    assert [server.name for server in runtime.servers("web")] == ["old-0", "old-1", "new-0"]
    with pytest.raises(RuntimeAPIError):
        runtime.set_weight("web", "ghost-0", 1)


def test_haproxy_header_routes_are_refused_clearly(haproxy: tuple[HAProxyRuntime, str]) -> None:
    router = HAProxyRouter(haproxy[0])
    match = [HeaderRoutingMatch(header_name="X", header_value=StringMatch(exact="y"))]

    with pytest.raises(PermanentError, match="use the built-in proxy"):
        router.set_header_route(ROLLOUT, "qa", match)
    router.set_header_route(ROLLOUT, "qa", None)
    router.remove_managed_routes(ROLLOUT)


@pytest.mark.asyncio
async def test_haproxy_weight_changes_under_load_drop_nothing(haproxy: tuple[HAProxyRuntime, str]) -> None:
    runtime, listen = haproxy
    router = HAProxyRouter(runtime)
    failures: list[str] = []
    count = 0

    async def load(stop: asyncio.Event) -> None:
        nonlocal count
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(f"http://{listen}/") as response:
                        await response.read()
                        count += 1
                        if response.status != 200:
                            failures.append(str(response.status))
                except aiohttp.ClientError as error:
                    failures.append(repr(error))

    stop = asyncio.Event()
    workers = [asyncio.create_task(load(stop)) for _ in range(4)]
    for weight in [10, 30, 50, 80, 100, 0, 50, 100]:
        await asyncio.to_thread(router.set_weight, ROLLOUT, weight, "new", "old")
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*workers)

    assert count > 100
    assert failures == []
