"""Scripted measurements, and the explicit table that picks a provider for a metric."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from headway.providers.base import MeasureContext, ProviderResult
from headway.providers.job import LocalJobProvider
from headway.providers.prometheus import PrometheusProvider
from headway.providers.registry import ProviderRegistry, UnknownProviderError, default_registry, provider_type
from headway.providers.static import Fail, StaticProvider, Wait
from headway.providers.web import WebProvider
from headway.spec.analysis import Metric

CONTEXT = MeasureContext(args={}, now=datetime(2026, 1, 1, tzinfo=UTC), run_name="run-1")


def metric(name: str = "m", provider: dict[str, Any] | None = None) -> Metric:
    return Metric.model_validate({"name": name, "provider": provider or {"prometheus": {"query": "up"}}})


async def timeline(provider: StaticProvider, m: Metric, steps: int, context: MeasureContext = CONTEXT) -> list[Any]:
    """What each successive call answers: start, then poll while pending, then start again."""
    answers: list[Any] = []
    pending: str | None = None
    for _ in range(steps):
        result = await (provider.poll(m, pending, context) if pending else provider.start(m, context))
        pending = result.pending
        answers.append("pending" if result.pending else result.error or result.value)
    return answers


@pytest.mark.asyncio
async def test_a_script_plays_in_order_and_its_last_step_repeats() -> None:
    provider = StaticProvider([0.99, Fail("scrape failed"), Wait(2), 0.97])

    answers = await timeline(provider, metric(), 7)

    assert answers == [0.99, "scrape failed", "pending", "pending", 0.97, 0.97, 0.97]
    assert provider.calls("m", "run-1") == 7


@pytest.mark.asyncio
async def test_metrics_and_runs_have_their_own_counters() -> None:
    provider = StaticProvider([1, 2, 3])
    other_run = replace(CONTEXT, run_name="run-2")

    assert await timeline(provider, metric("a"), 2) == [1, 2]
    assert await timeline(provider, metric("b"), 1) == [1]
    assert await timeline(provider, metric("a"), 1, other_run) == [1]


@pytest.mark.asyncio
async def test_a_function_of_the_call_number() -> None:
    provider = StaticProvider(lambda n: Fail("down") if n % 2 else n / 10)

    assert await timeline(provider, metric(), 4) == [0.0, "down", 0.2, "down"]


@pytest.mark.asyncio
async def test_a_script_that_raises_becomes_an_error_not_an_exception() -> None:
    provider = StaticProvider(lambda n: 1 / 0)

    result = await provider.start(metric(), CONTEXT)

    assert result.error == "static: script raised ZeroDivisionError: division by zero"


@pytest.mark.asyncio
async def test_a_provider_result_step_is_returned_as_is() -> None:
    step = ProviderResult(value=[0.5], metadata={"note": "x"})

    assert await StaticProvider([step]).start(metric(), CONTEXT) is step


@pytest.mark.asyncio
async def test_a_manifest_carries_its_script_in_the_plugin_block() -> None:
    values = [0.99, {"error": "boom"}, {"wait": 1}, [0.5, 0.6]]
    m = metric(provider={"plugin": {"static": {"values": values}}})

    assert await timeline(StaticProvider(), m, 5) == [0.99, "boom", "pending", [0.5, 0.6], [0.5, 0.6]]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "config",
    [{"values": []}, {"values": "0.9"}, {}, {"values": [{"wait": -1}]}],
    ids=["empty", "not-a-list", "missing", "negative-wait"],
)
async def test_a_bad_manifest_script_is_an_error_naming_the_field(config: dict[str, Any]) -> None:
    m = metric(provider={"plugin": {"static": config}})

    result = await StaticProvider().start(m, CONTEXT)

    assert result.error is not None
    assert "provider.plugin.static.values" in result.error


@pytest.mark.asyncio
async def test_poll_of_an_unknown_or_cancelled_handle_is_an_error() -> None:
    provider = StaticProvider([Wait(5)])
    started = await provider.start(metric(), CONTEXT)
    assert started.pending is not None

    await provider.cancel(metric(), started.pending)
    await provider.cancel(metric(), started.pending)
    result = await provider.poll(metric(), started.pending, CONTEXT)

    assert result.error is not None
    assert "unknown pending measurement" in result.error


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ({"prometheus": {"query": "up"}}, "prometheus"),
        ({"web": {"url": "http://x"}}, "web"),
        ({"job": {"spec": {}}}, "job"),
        ({"newRelic": {"query": "q"}}, "newRelic"),
        ({"plugin": {"static": {"values": [1]}}}, "static"),
        ({"plugin": {"argoproj-labs/sample": {}}}, "argoproj-labs/sample"),
    ],
)
def test_provider_type_is_the_wire_name_or_the_plugin_name(provider: dict[str, Any], expected: str) -> None:
    assert provider_type(metric(provider=provider)) == expected


def test_the_default_registry_knows_the_embedded_providers() -> None:
    registry = default_registry(prometheus_address="http://prometheus:9090")

    assert registry.known() == ("job", "prometheus", "static", "web")
    prometheus = registry.for_metric(metric())
    assert isinstance(prometheus, PrometheusProvider)
    assert prometheus.default_address == "http://prometheus:9090"
    assert registry.for_metric(metric()) is prometheus  # built once, shared
    assert isinstance(registry.get("web"), WebProvider)
    assert isinstance(registry.get("job"), LocalJobProvider)


def test_an_unknown_type_names_the_known_ones() -> None:
    registry = default_registry()

    with pytest.raises(UnknownProviderError) as raised:
        registry.for_metric(metric("latency", {"datadog": {"query": "avg:x"}}))

    assert str(raised.value) == (
        "metric 'latency': no metric provider for type 'datadog' (known: job, prometheus, static, web)"
    )
    with pytest.raises(UnknownProviderError, match=r"type 'nope' \(known: job, prometheus, static, web\)"):
        registry.get("nope")


def test_a_plugin_block_with_two_plugins_is_refused() -> None:
    with pytest.raises(
        UnknownProviderError, match=r"metric 'm': provider.plugin must name exactly one plugin \(got 'a', 'b'\)"
    ):
        default_registry().for_metric(metric("m", {"plugin": {"a": {}, "b": {}}}))


def test_registering_twice_needs_replace() -> None:
    registry = ProviderRegistry({"web": WebProvider})
    with pytest.raises(ValueError, match="already registered"):
        registry.register("web", WebProvider)

    scripted = StaticProvider([1])
    registry.register("web", lambda: scripted, replace=True)

    assert registry.get("web") is scripted


def test_from_environment_reads_headway_then_argo_variables() -> None:
    both = {"HEADWAY_PROMETHEUS_ADDRESS": "http://a", "ARGO_ROLLOUTS_PROMETHEUS_ADDRESS": "http://b"}

    assert PrometheusProvider.from_environment(both).default_address == "http://a"
    assert PrometheusProvider.from_environment({"ARGO_ROLLOUTS_PROMETHEUS_ADDRESS": "http://b"}).default_address == (
        "http://b"
    )
    assert PrometheusProvider.from_environment({}).default_address is None
