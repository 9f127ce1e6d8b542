"""The TrafficRouter contract, run against the embedded-proxy and HAProxy routers over real processes.

The contract's test bodies are taken from `tests.contract.test_router` and collected here again with this
module's `router` fixture, so both adapters pass the suite the fake passes. HAProxy cannot add header or mirror
routes at runtime (it refuses clearly instead), so the two tests that add routes run against the proxy router
only, and HAProxy gets a weights-only restore test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.routers.base import TrafficRouter
from headway.routers.haproxy import HAProxyRouter, HAProxyRuntime, Site, haproxy_config
from headway.routers.proxy import ProxyRouter
from tests.contract import test_router as contract
from tests.e2e.proxy.conftest import require_binary
from tests.e2e.proxy.processes import TOKEN, Running, call, free_port, proxy
from tests.scenarios.harness import canary

rollout = contract.rollout
test_a_weight_reads_back = contract.test_a_weight_reads_back
test_setting_a_weight_twice_is_setting_it_once = contract.test_setting_a_weight_twice_is_setting_it_once
test_rollouts_do_not_share_weights = contract.test_rollouts_do_not_share_weights

APPS = ("web", "api")


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[str, Running]]:
    started = {app: proxy() for app in APPS}
    yield started
    for running in started.values():
        running.stop()


@pytest.fixture(scope="module")
def haproxy_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxyRuntime]:
    binary = require_binary("haproxy")
    directory: Path = tmp_path_factory.mktemp("haproxy")
    socket_path = directory / "runtime.sock"
    sites = [
        Site(
            name=app,
            listen=f"127.0.0.1:{free_port()}",
            servers={"old": ["127.0.0.1:9"], "new": ["127.0.0.1:9"]},
            stable="old",
        )
        for app in APPS
    ]
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(sites, runtime_socket=socket_path))
    process = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket_path.exists():
                break
            assert process.poll() is None, "haproxy exited at start"
            subprocess.run(["sleep", "0.05"], check=True)
        yield HAProxyRuntime(socket_path)
    finally:
        process.terminate()
        process.wait(10)


def reset_proxies(proxies: dict[str, Running]) -> ProxyRouter:
    for running in proxies.values():
        call("PUT", running.admin + "/state", {"stable": "old", "weights": {"old": 100}})
    return ProxyRouter({f"default/{app}": running.admin for app, running in proxies.items()}, token=TOKEN)


def reset_haproxy(runtime: HAProxyRuntime) -> HAProxyRouter:
    for app in APPS:
        runtime.set_weight(app, "old-0", 200)
        runtime.set_weight(app, "new-0", 0)
    return HAProxyRouter(runtime)


@pytest.fixture(params=["proxy", "haproxy"])
def router(request: pytest.FixtureRequest) -> TrafficRouter:
    if request.param == "proxy":
        return reset_proxies(request.getfixturevalue("proxies"))
    return reset_haproxy(request.getfixturevalue("haproxy_runtime"))


def test_routes_are_set_and_removed_idempotently_by_the_proxy(proxies: dict[str, Running]) -> None:
    contract.test_routes_are_set_and_removed_idempotently(reset_proxies(proxies), canary(routed=True))


def test_restore_undoes_every_change_of_the_proxy(proxies: dict[str, Running]) -> None:
    contract.test_restore_undoes_every_change(reset_proxies(proxies), canary(routed=True))


def test_restore_undoes_every_weight_change_of_haproxy(haproxy_runtime: HAProxyRuntime) -> None:
    router, web = reset_haproxy(haproxy_runtime), canary(routed=True)
    before = router.read_weight(web)
    router.set_weight(web, 40, "new", "old")

    router.restore(web)
    router.restore(web)

    assert router.read_weight(web) == before
    assert [server.weight for server in haproxy_runtime.servers("web")] == [200, 0]
