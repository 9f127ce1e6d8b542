"""Issue #10, case 3: a router (or a gate) the mode cannot drive must be refused or driven, never reported done.

Each test failed on the code before the mode registry (`headway.engine.admission`):
- embedded mode took an ``istio`` Rollout, started its built-in proxy with no backends and read its own weight
  back as verified; now the apply is refused, and nothing is stored or started;
- the controller drove only the first of ``nginx`` + ``smi`` (the TrafficSplit was never written); now both are
  set and a weight is reported only when both carry it;
- ``headway lint`` passed a ``traefik`` Rollout the controller refuses; now it says so for the kubernetes mode;
- ``spec.webhooks`` gates were accepted but the controller had no gate backend, so every pass ended in
  ``ActionFailed`` with no status saved; now a confirm-promotion gate holds the rollout until it says yes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from click.testing import CliRunner

from headway.bootstrap.embedded import build_embedded
from headway.cli.main import main
from headway.kube.client import EVENTS, REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.routers.nginx import INGRESSES, WEIGHT
from headway.routers.smi import TRAFFIC_SPLITS
from headway.spec.load import SpecError
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import (
    GROUP,
    Kubelet,
    canary_weight,
    eventually,
    install,
    rollout_body,
    running,
    serve,
    status,
)


def _rollout(routing: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A canary of a process that would run for a minute, routed by ``routing``."""
    return {
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "v1", "command": [sys.executable, "-c", "import time; time.sleep(60)"]}
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "canaryService": "web-canary",
                    "stableService": "web-stable",
                    "trafficRouting": routing,
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                }
            },
            **spec,
        },
    }


# --- embedded: istio is refused at apply, nothing is started ------------------------------------------------------


@pytest.mark.asyncio
async def test_embedded_refuses_an_istio_rollout_at_apply_and_starts_nothing(tmp_path: Path) -> None:
    embedded = build_embedded(tmp_path / "state")
    istio = _rollout({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}})
    try:
        with pytest.raises(SpecError) as refused:
            embedded.runner.apply_text(yaml.safe_dump(istio), "rollout.yaml")
        await embedded.runner.turn()  # a loop turn with nothing to reconcile

        problems = refused.value.problems
        assert [problem.path for problem in problems] == ["spec.strategy.canary.trafficRouting.istio"]
        assert problems[0].message.startswith("the embedded mode cannot drive istio")
        assert embedded.store.list_documents("Rollout") == []
        assert embedded.runner.rollouts() == {}
        assert embedded.proxies.known() == {}  # no proxy process was started for it
        assert not list((tmp_path / "state" / "proxies").glob("*.endpoint.json"))
        state = tmp_path / "state" / "platform.json"
        assert not state.exists() or not json.loads(state.read_text()).get("revisions")
    finally:
        embedded.platform.close()
        embedded.proxies.stop_all()
        if embedded.gates is not None:
            embedded.gates.close()
        embedded.store.close()


# --- kubernetes: nginx + smi are both driven ----------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = serve()
    server.emulator.declare("split.smi-spec.io", "v1alpha2", "trafficsplits", "TrafficSplit")
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest_asyncio.fixture
async def client(api: ApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient.for_server(api.url)
    try:
        yield client
    finally:
        await client.close()


async def _healthy_on(client: KubeClient, image: str) -> bool:
    current = await status(client)
    if current.get("phase") != "Healthy" or not current.get("stableRS"):
        return False
    rs = await client.get(REPLICA_SETS, f"web-{current['stableRS']}", "default")
    return rs is not None and rs["spec"]["template"]["spec"]["containers"][0]["image"] == image


async def _new_image(client: KubeClient, body: dict[str, Any], image: str) -> None:
    template = body["spec"]["template"]
    template["spec"]["containers"][0]["image"] = image
    await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})


async def _weights(client: KubeClient) -> tuple[int | None, int | None]:
    """(the canary Ingress's weight, the TrafficSplit's canary weight): None where there is none."""
    ingress = await client.get(INGRESSES, "web-web-canary", "default")
    split = await client.get(TRAFFIC_SPLITS, "web", "default")
    nginx = int(ingress["metadata"]["annotations"][WEIGHT]) if ingress is not None else None
    backends = {b["service"]: b["weight"] for b in (split or {}).get("spec", {}).get("backends", [])}
    return nginx, backends.get("web-canary")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_controller_drives_every_router_of_a_rollout(api: ApiServer, client: KubeClient) -> None:
    for suffix in ("stable", "canary"):
        service = {"metadata": {"name": f"web-{suffix}", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}
        await client.create(SERVICES, service)
    backend = {"service": {"name": "web-stable", "port": {"number": 80}}}
    ingress = {
        "metadata": {"name": "web", "namespace": "default", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {
            "rules": [
                {"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            ]
        },
    }
    await client.create(INGRESSES, ingress)
    body = _rollout({"nginx": {"stableIngress": "web"}, "smi": {"rootService": "web"}})
    body["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 30}, {"pause": {}}]
    body["spec"]["strategy"]["canary"]["scaleDownDelaySeconds"] = 0
    await client.create(rollouts(GROUP), body)

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy_on(client, "v1"), what="the first revision to be stable")
        await _new_image(client, body, "v2")

        async def paused_at_30() -> bool:
            return (await status(client)).get("phase") == "Paused" and await _weights(client) == (30, 30)

        await eventually(paused_at_30, timeout=30, what="both the canary Ingress and the TrafficSplit at 30%")

    assert await _weights(client) == (30, 30)


# --- lint: a router the controller refuses is reported for the kubernetes mode -----------------------------------


def test_lint_reports_a_traefik_rollout_for_the_kubernetes_mode(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(_rollout({"traefik": {"weightedTraefikServiceName": "web"}})))
    field = "spec.strategy.canary.trafficRouting.traefik"

    both = CliRunner().invoke(main, ["lint", str(path)])
    kubernetes = CliRunner().invoke(main, ["lint", "--mode", "kubernetes", str(path)])

    assert both.exit_code == 0  # written for either mode: what each lacks is a warning naming it
    assert f"{field}: the kubernetes mode cannot drive traefik" in both.stdout
    assert f"{field}: the embedded mode cannot drive traefik" in both.stdout
    assert kubernetes.exit_code == 1  # for the controller: an error, as the controller refuses it
    assert f"{field}: the kubernetes mode cannot drive traefik" in kubernetes.stdout
    assert "1 error" in kubernetes.stderr


# --- kubernetes: spec.webhooks gates are called ----------------------------------------------------------------


@pytest_asyncio.fixture
async def gate() -> AsyncIterator[dict[str, Any]]:
    """A confirm-promotion webhook on 127.0.0.1: 503 ("not yet") until the test sets ``open``."""
    state: dict[str, Any] = {"open": False, "calls": 0}

    async def answer(request: web.Request) -> web.Response:
        state["calls"] += 1
        return web.json_response({}, status=200 if state["open"] else 503)

    app = web.Application()
    app.router.add_post("/gate", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}/gate"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_confirm_promotion_gate_holds_the_rollout_until_it_says_yes(
    api: ApiServer, client: KubeClient, gate: dict[str, Any]
) -> None:
    await install(client)
    body = rollout_body(steps=[{"setWeight": 50}, {"pause": {"duration": "1s"}}])
    body["spec"]["webhooks"] = [
        {"name": "ask-the-team", "type": "confirm-promotion", "url": gate["url"], "intervalSeconds": 1}
    ]
    await client.create(rollouts(GROUP), body)

    async with Kubelet(client), running(api):
        await eventually(lambda: _healthy_on(client, "example/web:1"), what="the first revision to be stable")
        template = rollout_body(image="example/web:2")["spec"]["template"]
        await client.patch(rollouts(GROUP), "web", "default", {"spec": {"template": template}})

        stable = (await status(client)).get("stableRS")

        async def asked_again() -> bool:
            return (
                int(gate["calls"]) >= 3
            )  # past the 1 s pause, the gate was asked (and said no) interval after interval

        await eventually(asked_again, timeout=30, what="the gate to be asked again after a no")
        held = await status(client)
        assert (held.get("stableRS"), held.get("currentStepIndex")) == (stable, 1)  # not promoted: held at the end
        assert await canary_weight(client) == 50
        assert not await _healthy_on(client, "example/web:2")

        gate["open"] = True
        await eventually(lambda: _healthy_on(client, "example/web:2"), timeout=30, what="promotion once it says yes")

    failed = [event for event in await client.list(EVENTS, "default") if event["reason"] == "ActionFailed"]
    assert failed == []
