"""The MetricProvider contract, run against every provider in ``headway/providers`` with real backends.

`PROVIDERS` lists them (one line each; `tests/contract/test_adapters.py` checks none is missing). Each provider
gets a harness: a metric that measures a known value, one whose query fails, and a few that are broken in the
ways users break them. The contract: success is a value, failure is an error message, broken input is an error
message too (never an exception), every answer is exactly one of value/error/pending, cancel is idempotent, and
polling a handle the provider never issued is an error. Prometheus runs against a real server (skipped locally
without the binary, a failure under CI), web against a real HTTP server, job with real ``sh -c`` processes, the
proxy provider against a real embedded proxy, and the cluster's job provider creates batch/v1 Jobs on the API
server emulator, whose commands `EmulatedJobs` runs as local processes (the emulator runs no pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiohttp import web

from headway.kube.client import JOBS, NotFoundError
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.providers.job import LocalJobProvider
from headway.providers.k8s_job import KubernetesJobProvider
from headway.providers.prometheus import PrometheusProvider
from headway.providers.proxy import ProxyProvider
from headway.providers.registry import default_registry, provider_type
from headway.providers.static import StaticProvider
from headway.providers.web import WebProvider
from headway.runtimes.embedded.analysis import RolloutProxyProvider
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.kubernetes.analysis import ClusterJobs, cluster_providers
from headway.spec.analysis import Metric
from tests.contract import adapters
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import GROUP
from tests.e2e.prometheus import server
from tests.e2e.proxy.processes import TOKEN, Running, call
from tests.unit.providers.servers import serve

T = TypeVar("T")


def metric(name: str, provider: dict[str, Any]) -> Metric:
    return Metric.model_validate({"name": name, "provider": provider})


@dataclass
class Harness:
    """One provider and the metrics that exercise it."""

    provider: MetricProvider
    good: Metric
    expected: object
    bad: Metric
    broken: list[Metric] = field(default_factory=list)
    context: MeasureContext = field(
        default_factory=lambda: MeasureContext(args={}, now=datetime.now(UTC), run_name="contract")
    )
    measured: Callable[[Any], object] = lambda value: value
    """The part of a good measurement compared with ``expected`` (the whole value unless it is a document)."""
    registered: Callable[[Metric], MetricProvider] = lambda metric: default_registry().for_metric(metric)
    """The provider the mode that offers this one hands out for a metric (the embedded mode's table by default)."""
    registered_type: type | None = None
    """The class that mode registers, when it wraps the provider (the embedded proxy provider); None: the same."""


def job(name: str, script: str | None) -> Metric:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if script is not None:
        container["command"] = ["sh", "-c", script]
    spec = {"backoffLimit": 0, "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}}
    return metric(name, {"job": {"spec": spec}})


def static_harness() -> Harness:
    return Harness(
        provider=StaticProvider(),
        good=metric("good", {"plugin": {"static": {"values": [{"wait": 1}, 0.97]}}}),
        expected=0.97,
        bad=metric("bad", {"plugin": {"static": {"values": [{"error": "scrape failed"}]}}}),
        broken=[metric("empty", {"plugin": {"static": {"values": []}}})],
    )


def job_harness() -> Harness:
    return Harness(
        provider=LocalJobProvider(grace_period=0.5),
        good=job("good", "exit 0"),
        expected=1,
        bad=job("bad", "echo nope >&2; exit 2"),
        broken=[job("no-command", None), metric("no-template", {"job": {"spec": {"backoffLimit": 1}}})],
    )


async def ok(_: web.Request) -> web.Response:
    return web.json_response({"data": {"ok": 0.97}})


async def down(_: web.Request) -> web.Response:
    return web.Response(status=500, text="down")


def web_harness(base: str) -> Harness:
    return Harness(
        provider=WebProvider(),
        good=metric("good", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data.ok}"}}),
        expected=0.97,
        bad=metric("bad", {"web": {"url": f"{base}/down"}}),
        broken=[
            metric("no-url", {"web": {"url": "nope"}}),
            metric("filter", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data[?(@.ok)]}"}}),
            metric("missing", {"web": {"url": f"{base}/ok", "jsonPath": "{$.data.nothing}"}}),
        ],
    )


def prometheus_harness(data: server.Backfill) -> Harness:
    return Harness(
        provider=PrometheusProvider(default_address=data.url),
        good=metric("good", {"prometheus": {"query": 'headway_success_rate{revision="canary"}'}}),
        expected=[0.95],
        bad=metric("bad", {"prometheus": {"query": "sum(rate(x[1m])"}}),
        broken=[
            metric("no-scheme", {"prometheus": {"query": "up", "address": "prometheus:9090"}}),
            metric("sigv4", {"prometheus": {"query": "up", "authentication": {"sigv4": {"region": "x"}}}}),
            metric("range", {"prometheus": {"query": "up", "rangeQuery": {"start": "soon", "step": "1m"}}}),
        ],
        context=MeasureContext(args={}, now=data.at, run_name="contract"),
    )


def proxy_harness(proxies: Mapping[str, Running], state_dir: Path) -> Harness:
    admin = proxies["web"].admin
    call("PUT", admin + "/state", {"stable": "old", "weights": {"old": 100}})  # no request yet: zero counted

    def registered(_: Metric) -> MetricProvider:
        # The embedded mode registers it as the bootstrap does: aimed at the proxy of the run's rollout.
        return RolloutProxyProvider(Proxies(state_dir), lambda _run: None)

    return Harness(
        provider=ProxyProvider(token=TOKEN),
        good=metric("good", {"plugin": {"proxy": {"address": admin, "window": "30s"}}}),
        expected=("old", 0),
        measured=lambda value: (value["stable"]["revision"], value["stable"]["requests"]),
        bad=metric("bad", {"plugin": {"proxy": {"address": "http://127.0.0.1:9"}}}),
        broken=[
            metric("window", {"plugin": {"proxy": {"address": admin, "window": "soon"}}}),
            metric("cut", {"plugin": {"proxy": {"address": admin, "latencyCut": "fast"}}}),
            metric("address", {"plugin": {"proxy": {"address": "nope"}}}),
        ],
        registered=registered,
        registered_type=RolloutProxyProvider,
    )


class EmulatedJobs:
    """The cluster's `JobApi` (`ClusterJobs`) on the API server emulator, plus the Job controller it lacks.

    Each created Job's first container command runs as a local process; its exit is written to the Job's
    status as the Job controller would (``succeeded``, or a ``Failed`` condition). A Job with no command to run
    fails the same way, as its pod would. Calls hop to the emulator's event loop, where its client lives.
    """

    def __init__(self, api: ApiServer) -> None:
        self._api = api
        self._jobs = ClusterJobs(api.client, GROUP)
        self._running: set[asyncio.Task[None]] = set()

    async def _there(self, call: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self._api.loop))

    async def create_job(self, namespace: str, run_name: str, body: dict[str, Any]) -> None:
        await self._there(self._jobs.create_job(namespace, run_name, body))
        task = asyncio.create_task(self._run(namespace, body))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def read_job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return await self._there(self._jobs.read_job(namespace, name))

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._there(self._jobs.delete_job(namespace, name))

    async def _run(self, namespace: str, body: dict[str, Any]) -> None:
        containers = ((body["spec"].get("template") or {}).get("spec") or {}).get("containers") or [{}]
        command = containers[0].get("command")
        code = 127
        if command:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            code = await process.wait()
        failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": f"exit {code}"}
        status = {"succeeded": 1} if code == 0 else {"failed": 1, "conditions": [failed]}
        with contextlib.suppress(NotFoundError):  # deleted meanwhile (cancelled): nothing to report
            await self._there(
                self._api.client.patch(JOBS, body["metadata"]["name"], namespace, {"status": status}, status=True)
            )


def cluster_job_harness(api: ApiServer) -> Harness:
    local = job_harness()
    return Harness(
        provider=KubernetesJobProvider(EmulatedJobs(api)),
        good=local.good,
        expected=1,
        bad=local.bad,
        broken=[job("no-command", None), metric("no-template", {"job": {"spec": {"backoffLimit": 1}}})],
        context=MeasureContext(args={}, now=datetime.now(UTC), namespace="default", run_name="contract"),
        registered=lambda m: cluster_providers(api.client, GROUP)[provider_type(m)],
    )


@pytest.fixture(scope="session")
def contract_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.Backfill]:
    process, data = server.backfilled(tmp_path_factory.mktemp("contract-prometheus"))
    try:
        yield data
    finally:
        process.stop()


@dataclass(frozen=True)
class ProviderAdapter:
    """A provider of ``headway/providers`` and how a test gets its harness."""

    name: str
    implementation: type
    harness: Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Harness]]
    real_process: bool = False
    """Starts a server process: marked ``slow`` (out of the fast loop)."""


def _ready(build: Callable[[pytest.FixtureRequest], Harness]) -> Callable[..., Any]:
    @contextlib.asynccontextmanager
    async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        yield build(request)

    return harness


@contextlib.asynccontextmanager
async def web_harness_served(_: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with serve([("GET", "/ok", ok), ("GET", "/down", down)]) as base:
        yield web_harness(base)


PROVIDERS: list[ProviderAdapter] = [
    ProviderAdapter("static", StaticProvider, _ready(lambda _: static_harness())),
    ProviderAdapter("job", LocalJobProvider, _ready(lambda _: job_harness())),
    ProviderAdapter("web", WebProvider, web_harness_served),
    ProviderAdapter(
        "prometheus",
        PrometheusProvider,
        _ready(lambda request: prometheus_harness(request.getfixturevalue("contract_prometheus"))),
        real_process=True,
    ),
    ProviderAdapter(
        "proxy",
        ProxyProvider,
        _ready(lambda request: proxy_harness(request.getfixturevalue("proxies"), request.getfixturevalue("tmp_path"))),
        True,
    ),
    ProviderAdapter(
        "k8s_job", KubernetesJobProvider, _ready(lambda request: cluster_job_harness(adapters.kube(request)))
    ),
]


@pytest_asyncio.fixture(
    params=[pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.real_process else []) for p in PROVIDERS]
)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    entry: ProviderAdapter = request.param
    async with entry.harness(request) as built:
        yield built


def exactly_one(result: ProviderResult) -> None:
    chosen = [result.value is not None, result.error is not None, result.pending is not None]
    # A value may legitimately be None only if nothing else is set; error and pending are never both set.
    assert sum(chosen[1:]) <= 1
    assert not (chosen[0] and any(chosen[1:]))
    if result.error is not None:
        assert isinstance(result.error, str)
        assert result.error.strip()
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in result.metadata.items())


def same(value: object, expected: object) -> bool:
    """Numbers within rounding, anything else exactly."""
    if isinstance(expected, tuple):
        return value == expected
    return bool(value == pytest.approx(expected))


async def drive(harness: Harness, m: Metric, timeout: float = 20.0) -> ProviderResult:
    """Start, then poll while pending, checking the shape of every answer."""
    result = await harness.provider.start(m, harness.context)
    exactly_one(result)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while result.pending is not None:
        assert loop.time() < deadline, "a measurement stayed pending too long"
        await asyncio.sleep(0.02)
        result = await harness.provider.poll(m, result.pending, harness.context)
        exactly_one(result)
    return result


@pytest.mark.asyncio
async def test_success_is_a_value(harness: Harness) -> None:
    result = await drive(harness, harness.good)

    assert result.error is None
    assert same(harness.measured(result.value), harness.expected)


@pytest.mark.asyncio
async def test_a_failed_query_is_an_error_message(harness: Harness) -> None:
    result = await drive(harness, harness.bad)

    assert result.value is None
    assert result.error


@pytest.mark.asyncio
async def test_broken_metrics_are_errors_never_exceptions(harness: Harness) -> None:
    assert harness.broken
    for broken in harness.broken:
        result = await drive(harness, broken)

        assert result.error, broken.name


@pytest.mark.asyncio
async def test_a_metric_for_another_provider_is_an_error(harness: Harness) -> None:
    other = (
        metric("other", {"web": {"url": "http://127.0.0.1:9/"}})
        if provider_type(harness.good) != "web"
        else metric("other", {"prometheus": {"query": "up"}})
    )

    result = await drive(harness, other)

    assert result.error


@pytest.mark.asyncio
async def test_poll_of_an_unknown_handle_is_an_error(harness: Harness) -> None:
    result = await harness.provider.poll(harness.good, "never-issued", harness.context)

    exactly_one(result)
    assert result.error


@pytest.mark.asyncio
async def test_cancel_is_idempotent(harness: Harness) -> None:
    started = await harness.provider.start(harness.good, harness.context)
    handle = started.pending or "never-issued"

    await harness.provider.cancel(harness.good, handle)
    await harness.provider.cancel(harness.good, handle)
    await harness.provider.cancel(harness.good, "never-issued")

    if started.pending is not None:
        after = await harness.provider.poll(harness.good, handle, harness.context)
        assert after.error


@pytest.mark.asyncio
async def test_concurrent_measurements_do_not_interfere(harness: Harness) -> None:
    results = await asyncio.gather(*(drive(harness, harness.good) for _ in range(4)), drive(harness, harness.bad))

    assert all(same(harness.measured(result.value), harness.expected) for result in results[:4])
    assert results[4].error


@pytest.mark.asyncio
async def test_the_registry_maps_the_metric_to_this_kind_of_provider(harness: Harness) -> None:
    registered = harness.registered(harness.good)

    assert type(registered) is (harness.registered_type or type(harness.provider))
    assert registered.type == harness.provider.type == provider_type(harness.good)


def test_every_provider_the_embedded_mode_registers_has_a_harness() -> None:
    registered = {type(default_registry().get(name)) for name in default_registry().known()}

    assert registered <= {entry.implementation for entry in PROVIDERS}
