"""The TrafficRouter contract, for every router (`tests.contract.adapters.ROUTERS`).

What is set reads back (weights and routes, through `read_state`), setting twice is setting
once, restore undoes it all, rollouts do not share routing, and a difference from what was set reads back as
drift. A router that cannot add a kind of route (SMI and HAProxy: none; NGINX: no mirrors) says so in its entry
and is held to refusing it by name. The sections after the shared contract pin what only one adapter shows: the
fake's lag and verification (which the core's weight verification is tested against), the Kubernetes routers'
exact restore of the user's objects, the proxy's backends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from headway.core.dataplane import ExpectedRouting
from headway.core.errors import PermanentError, TemporaryError
from headway.core.observation import DriftKind, RouterState
from headway.kube.client import HTTP_ROUTES, ApiConflictError
from headway.routers.base import TrafficRouter, Verification
from headway.routers.fake import EPOCH, FakeRouter
from headway.routers.gatewayapi import ORIGINAL_ANNOTATION, GatewayApiRouter, set_weights, target_of
from headway.routers.haproxy import HAProxyRuntime
from headway.routers.istio import VIRTUAL_SERVICES, IstioRouter
from headway.spec.rollout import HeaderRoutingMatch, Rollout, RouteMatch, StringMatch
from tests.contract import adapters
from tests.contract.adapters import ROUTERS, RouterAdapter
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.proxy.processes import Running, call
from tests.scenarios.harness import canary

HEADER = (HeaderRoutingMatch(header_name="X-Canary", header_value=StringMatch(exact="yes")),)
MIRROR = (RouteMatch(path=StringMatch(prefix="/api")),)


@pytest.fixture(params=adapters.params(ROUTERS))
def adapter(request: pytest.FixtureRequest) -> RouterAdapter:
    entry: RouterAdapter = request.param
    return entry


@pytest.fixture
def router(adapter: RouterAdapter, request: pytest.FixtureRequest) -> TrafficRouter:
    return adapter.build(request)


@pytest.fixture
def rollout(adapter: RouterAdapter) -> Rollout:
    return adapter.rollout("web")


def expected(
    weight: int,
    headers: tuple[tuple[str, tuple[HeaderRoutingMatch, ...]], ...] = (),
    mirrors: tuple[tuple[str, tuple[RouteMatch, ...], int], ...] = (),
) -> ExpectedRouting:
    return ExpectedRouting(
        canary_weight=weight, canary_hash="new", stable_hash="old", header_routes=headers, mirror_routes=mirrors
    )


def managed_routes(
    adapter: RouterAdapter, percentage: int = 20
) -> tuple[tuple[tuple[str, tuple[HeaderRoutingMatch, ...]], ...], tuple[tuple[str, tuple[RouteMatch, ...], int], ...]]:
    """The header and mirror routes the contract sets on ``adapter``: those it can carry."""
    headers = (("testers", HEADER),) if adapter.header_routes else ()
    mirrors = (("mirror", MIRROR, percentage),) if adapter.mirror_routes else ()
    return headers, mirrors


def set_routes(router: TrafficRouter, adapter: RouterAdapter, rollout: Rollout) -> None:
    headers, mirrors = managed_routes(adapter)
    for name, header in headers:
        router.set_header_route(rollout, name, header)
    for name, mirror, percentage in mirrors:
        router.set_mirror_route(rollout, name, mirror, percentage)


def route_drift(state: RouterState) -> list[tuple[DriftKind, str, str]]:
    return [(item.kind, item.name, item.expected) for item in state.drift if item.kind != DriftKind.WEIGHT]


# --- the contract ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 5, 50, 100])
def test_a_weight_reads_back(router: TrafficRouter, rollout: Rollout, weight: int) -> None:
    router.set_weight(rollout, weight, "new", "old")

    state = router.read_state(rollout, None)

    assert state.canary_weight == weight
    assert state.verified is not False


def test_setting_a_weight_twice_is_setting_it_once(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 20, "new", "old")
    once = router.read_state(rollout, expected(20))
    router.set_weight(rollout, 20, "new", "old")

    twice = router.read_state(rollout, expected(20))
    assert twice.canary_weight == 20
    assert (twice.canary_weight, twice.verified, twice.drift) == (once.canary_weight, once.verified, ())


def test_routes_are_set_and_removed_idempotently(
    adapter: RouterAdapter, router: TrafficRouter, rollout: Rollout
) -> None:
    headers, mirrors = managed_routes(adapter)
    with_routes, without = expected(30, headers, mirrors), expected(30)
    router.set_weight(rollout, 30, "new", "old")

    set_routes(router, adapter, rollout)
    once = router.read_state(rollout, with_routes)
    set_routes(router, adapter, rollout)

    assert router.read_state(rollout, with_routes).drift == once.drift == (), "set routes read back as set"
    # (kinds, not names: NGINX keeps one unnamed header route, reported under its annotation's name)
    present = [(kind, wanted) for kind, _, wanted in route_drift(router.read_state(rollout, without))]
    assert present == [(DriftKind.HEADER_ROUTE, "absent")] * len(headers) + [(DriftKind.MIRROR_ROUTE, "absent")] * len(
        mirrors
    ), "a route that is set is found on the data plane"

    for name, _ in headers:
        router.set_header_route(rollout, name, None)
        router.set_header_route(rollout, name, None)
    router.remove_managed_routes(rollout)
    router.remove_managed_routes(rollout)

    assert router.read_state(rollout, without).drift == (), "removed routes are gone from the data plane"
    assert all(found == "present" for _, _, found in route_drift(router.read_state(rollout, with_routes)))
    assert len(route_drift(router.read_state(rollout, with_routes))) == len(headers) + len(mirrors)
    assert router.read_state(rollout, None).canary_weight == 30, "removing routes leaves the weight alone"


@pytest.mark.parametrize("kind", ["header", "mirror"])
def test_a_route_the_router_cannot_carry_is_refused_by_name(
    adapter: RouterAdapter, router: TrafficRouter, rollout: Rollout, kind: str
) -> None:
    """Each router either carries a kind of route (it reads back) or refuses it naming the step; never ignores it."""
    router.set_weight(rollout, 10, "new", "old")
    capable = adapter.header_routes if kind == "header" else adapter.mirror_routes

    def add() -> None:
        if kind == "header":
            router.set_header_route(rollout, "asked", HEADER)
        else:
            router.set_mirror_route(rollout, "asked", MIRROR, 20)

    if capable:
        add()
        wanted = expected(10, (("asked", HEADER),)) if kind == "header" else expected(10, (), (("asked", MIRROR, 20),))
        assert router.read_state(rollout, wanted).drift == ()
        return
    with pytest.raises(PermanentError, match="asked"):
        add()
    router.set_header_route(rollout, "asked", None)  # removing what never existed is fine
    router.set_mirror_route(rollout, "asked", None, 0)
    router.remove_managed_routes(rollout)
    assert router.read_state(rollout, expected(10)).drift == (), "a refused route left nothing behind"
    assert router.read_state(rollout, None).canary_weight == 10


def test_restore_undoes_every_change(adapter: RouterAdapter, router: TrafficRouter, rollout: Rollout) -> None:
    before = router.read_state(rollout, None)
    router.set_weight(rollout, 40, "new", "old")
    set_routes(router, adapter, rollout)

    router.restore(rollout)
    router.restore(rollout)

    assert router.read_state(rollout, None) == before
    headers, mirrors = managed_routes(adapter)
    assert route_drift(router.read_state(rollout, expected(0))) == [], "no managed route survives restore"
    assert len(route_drift(router.read_state(rollout, expected(0, headers, mirrors)))) == len(headers) + len(mirrors)


def test_rollouts_do_not_share_weights(adapter: RouterAdapter, router: TrafficRouter) -> None:
    web, api = adapter.rollout("web"), adapter.rollout("api")

    router.set_weight(web, 30, "new", "old")

    assert router.read_state(api, None).canary_weight == 0
    assert router.read_state(web, None).canary_weight == 30


def test_rollouts_do_not_share_routes(adapter: RouterAdapter, router: TrafficRouter) -> None:
    web, api = adapter.rollout("web"), adapter.rollout("api")
    router.set_weight(web, 30, "new", "old")
    router.set_weight(api, 30, "new", "old")

    set_routes(router, adapter, web)

    assert router.read_state(api, expected(30)).drift == ()


# --- read-back of the managed routing (drift) -------------------------------------------------------------------


def test_what_was_set_reads_back_without_drift(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 30, "new", "old")

    state = router.read_state(rollout, expected(30))

    assert state.drift == ()
    assert state.canary_weight == 30
    assert state.verified is not False
    assert router.read_state(rollout, None).drift == (), "nothing expected: nothing compared"


def test_a_weight_other_than_the_one_set_reads_back_as_drift(router: TrafficRouter, rollout: Rollout) -> None:
    router.set_weight(rollout, 30, "new", "old")

    state = router.read_state(rollout, expected(60))

    assert [item.kind for item in state.drift] == [DriftKind.WEIGHT]
    assert "60" in state.drift[0].expected and "30" in state.drift[0].found


def test_managed_routes_read_back_and_a_lost_one_is_drift(
    adapter: RouterAdapter, router: TrafficRouter, rollout: Rollout
) -> None:
    router.set_weight(rollout, 30, "new", "old")
    set_routes(router, adapter, rollout)
    headers, mirrors = managed_routes(adapter)
    wanted = expected(30, headers, mirrors)
    assert router.read_state(rollout, wanted).drift == ()

    for name, _ in headers:
        router.set_header_route(rollout, name, None)
    for name, mirror, _ in mirrors:
        router.set_mirror_route(rollout, name, mirror, 50)

    drift = router.read_state(rollout, wanted).drift
    assert [(item.kind, item.name) for item in drift] == [
        *((DriftKind.HEADER_ROUTE, name) for name, _ in headers),
        *((DriftKind.MIRROR_ROUTE, name) for name, _, _ in mirrors),
    ]
    if headers:
        assert drift[0].found == "missing"


# --- what only the Kubernetes routers show ----------------------------------------------------------------------


def test_istio_restore_puts_the_users_virtual_service_back(api: ApiServer) -> None:
    api.emulator.declare("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    api.kube.create(VIRTUAL_SERVICES, adapters.virtual_service("web"))
    router, rollout = IstioRouter(api.kube), adapters.istio_rollout("web")
    before = api.kube.get(VIRTUAL_SERVICES, "web", "default")
    router.set_weight(rollout, 40, "new", "old")
    router.set_mirror_route(rollout, "shadow", MIRROR, 20)

    router.restore(rollout)

    after = api.kube.get(VIRTUAL_SERVICES, "web", "default")
    assert before is not None and after is not None
    assert after["spec"] == before["spec"]


@pytest.fixture
def gateway_router(api: ApiServer) -> GatewayApiRouter:
    for name in ("web", "api"):
        api.kube.create(HTTP_ROUTES, adapters.http_route(name))
    return GatewayApiRouter(api.kube)


def test_restore_puts_the_users_route_back_exactly(gateway_router: GatewayApiRouter, api: ApiServer) -> None:
    before = api.kube.get(HTTP_ROUTES, "web", "default")
    rollout = adapters.gateway_rollout("web")
    gateway_router.set_weight(rollout, 40, "new", "old")
    gateway_router.set_header_route(rollout, "testers", HEADER)

    gateway_router.restore(rollout)

    after = api.kube.get(HTTP_ROUTES, "web", "default")
    assert before is not None and after is not None
    assert after["spec"] == before["spec"]
    assert ORIGINAL_ANNOTATION not in (after["metadata"].get("annotations") or {})


def test_a_route_refused_by_its_gateway_gets_no_canary_traffic(
    gateway_router: GatewayApiRouter, api: ApiServer
) -> None:
    refused = {"conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}
    api.kube.patch(HTTP_ROUTES, "web", "default", {"status": {"parents": [refused]}}, status=True)

    with pytest.raises(TemporaryError, match="NotAllowedByListeners"):
        gateway_router.set_weight(adapters.gateway_rollout("web"), 20, "new", "old")
    assert gateway_router.read_state(adapters.gateway_rollout("web"), None).canary_weight == 0


def test_an_accepted_route_reads_back_verified(gateway_router: GatewayApiRouter, api: ApiServer) -> None:
    gateway_router.set_weight(adapters.gateway_rollout("web"), 20, "new", "old")
    route = api.kube.get(HTTP_ROUTES, "web", "default")
    assert route is not None
    generation = route["metadata"]["generation"]
    conditions = [
        {"type": kind, "status": "True", "reason": kind, "observedGeneration": generation}
        for kind in ("Accepted", "ResolvedRefs")
    ]
    api.kube.patch(HTTP_ROUTES, "web", "default", {"status": {"parents": [{"conditions": conditions}]}}, status=True)

    state = gateway_router.read_state(adapters.gateway_rollout("web"), None)
    assert state == RouterState(canary_weight=20, verified=True)


def test_a_concurrent_edit_of_the_route_is_a_conflict_not_clobbered(api: ApiServer) -> None:
    router, rollout = GatewayApiRouter(api.kube), adapters.gateway_rollout("web")
    api.kube.create(HTTP_ROUTES, adapters.http_route("web"))
    stale = api.kube.get(HTTP_ROUTES, "web", "default")
    assert stale is not None
    api.kube.patch(HTTP_ROUTES, "web", "default", {"metadata": {"labels": {"edited": "by-user"}}})

    with pytest.raises(ApiConflictError):
        router._write(target_of(rollout), stale, set_weights(stale["spec"]["rules"], target_of(rollout), 50))
    router.set_weight(rollout, 50, "new", "old")  # the next pass re-reads and succeeds

    route = api.kube.get(HTTP_ROUTES, "web", "default")
    assert route is not None
    assert route["metadata"]["labels"] == {"edited": "by-user"}
    assert router.read_state(rollout, None).canary_weight == 50


# --- what only the proxy and HAProxy routers show (real processes) ------------------------------------------------


@pytest.mark.slow
def test_the_proxy_reads_back_its_backends_per_revision(proxies: dict[str, Running], request: Any) -> None:
    router, web = adapters.proxy_router(request), canary(routed=True)
    call("PATCH", proxies["web"].admin + "/state", {"backends": {"old": ["127.0.0.1:9", "127.0.0.1:10"], "new": []}})

    assert router.read_state(web, None).backends == {"old": 2, "new": 0}


@pytest.mark.slow
def test_restore_puts_haproxy_servers_back_to_their_weights(haproxy_runtime: HAProxyRuntime, request: Any) -> None:
    router, web = adapters.haproxy_router(request), canary(routed=True)
    router.set_weight(web, 40, "new", "old")

    router.restore(web)

    assert [server.weight for server in haproxy_runtime.servers("web")] == [200, 0]


# --- the fake's lag and verification -------------------------------------------------------------------------


def test_fake_lagging_weight_is_not_verified_until_it_lands() -> None:
    router, rollout = FakeRouter(lag_seconds=15), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")
    assert router.read_state(rollout, None).canary_weight == 0
    assert router.verification(rollout) is Verification.NOT_VERIFIED
    assert router.next_change_at() == EPOCH + timedelta(seconds=15)

    router.advance(EPOCH + timedelta(seconds=15))
    assert router.read_state(rollout, None).canary_weight == 30
    assert router.read_state(rollout, None).verified is True


def test_fake_repeating_a_write_does_not_restart_the_lag() -> None:
    router, rollout = FakeRouter(lag_seconds=10), canary(routed=True)
    router.set_weight(rollout, 30, "new", "old")
    router.advance(EPOCH + timedelta(seconds=5))

    router.set_weight(rollout, 30, "new", "old")
    router.advance(EPOCH + timedelta(seconds=10))

    assert router.read_state(rollout, None).canary_weight == 30


def test_fake_can_fail_verification_forever() -> None:
    router, rollout = FakeRouter(fail_verification=True), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")

    assert router.read_state(rollout, None).verified is False


def test_fake_without_read_back_reports_not_implemented() -> None:
    router, rollout = FakeRouter(verifies=False), canary(routed=True)

    router.set_weight(rollout, 30, "new", "old")

    assert router.read_state(rollout, None).canary_weight is None
    assert router.read_state(rollout, None).verified is None
    assert router.verification(rollout) is Verification.NOT_IMPLEMENTED


def test_fake_fails_the_next_call_when_told() -> None:
    router, rollout = FakeRouter(), canary(routed=True)
    router.fail_next("set_weight", RuntimeError("boom"))

    with pytest.raises(RuntimeError, match="boom"):
        router.set_weight(rollout, 30, "new", "old")
    router.set_weight(rollout, 30, "new", "old")

    assert router.route(rollout).canary_weight == 30


def test_fake_records_routes_as_the_data_plane_sees_them() -> None:
    router, rollout = FakeRouter(), canary(routed=True)
    router.set_header_route(rollout, "testers", HEADER)
    router.set_mirror_route(rollout, "mirror", MIRROR, 20)

    router.set_header_route(rollout, "testers", None)

    route = router.route(rollout)
    assert route.header_routes == ()
    assert route.mirror_routes == (("mirror", MIRROR, 20),)


@pytest.mark.parametrize(
    ("verification", "verified"),
    [(Verification.VERIFIED, True), (Verification.NOT_VERIFIED, False), (Verification.NOT_IMPLEMENTED, None)],
)
def test_verification_maps_to_the_observed_tri_state(verification: Verification, verified: bool | None) -> None:
    assert verification.as_bool() is verified
    assert Verification.of(verified) is verification
