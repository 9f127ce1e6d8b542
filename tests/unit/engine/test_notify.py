"""Notifications against a real local aiohttp receiver: payloads, subscriptions, retries, timeouts, a full queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from headway.core.decision import Event, EventType
from headway.engine.notify import (
    Notifier,
    NotifyConfig,
    NotifyConfigError,
    Sink,
    SinkKind,
    Subscription,
)
from headway.engine.reconcile import Engine
from headway.platforms.fake import FakePlatform
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import Rollout
from headway.spec.status import CanaryStatus, Phase, RolloutStatus, TrafficWeights, WeightDestination
from headway.stores.memory import MemoryStore

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

ROLLOUT = Rollout.model_validate(
    {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}},
        },
    }
)
STATUS = RolloutStatus(
    phase=Phase.PAUSED,
    current_step_index=1,
    current_pod_hash="abc123",
    canary=CanaryStatus(
        weights=TrafficWeights(canary=WeightDestination(weight=20), stable=WeightDestination(weight=80))
    ),
)
PAUSED = Event(EventType.NORMAL, "RolloutPaused", "Rollout is paused (CanaryPauseStep)")
ABORTED = Event(EventType.WARNING, "RolloutAborted", "analysis run web-2-1 failed")


@dataclass
class Receiver:
    """A local HTTP server whose answers the test scripts: a list of behaviours, the last one repeating."""

    behaviours: list[str]
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        behaviour = self.behaviours[min(self.attempts, len(self.behaviours) - 1)]
        self.attempts += 1
        if behaviour == "hang":
            await asyncio.sleep(30)
        if behaviour == "fail":
            return web.Response(status=503, text="down for maintenance")
        self.received.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=204)


Serve = Callable[..., Awaitable[Receiver]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(*behaviours: str) -> Receiver:
        receiver = Receiver(list(behaviours) or ["ok"])
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


def config(*sinks: Sink, reasons: list[str] | None = None, queue_size: int = 100) -> NotifyConfig:
    subscription = Subscription(sinks=[s.name for s in sinks], **({"reasons": reasons} if reasons else {}))
    return NotifyConfig(sinks=list(sinks), subscriptions=[subscription], queue_size=queue_size)


@pytest.mark.asyncio
async def test_generic_webhook_gets_the_rollout_state_with_the_event(serve: Serve) -> None:
    receiver = await serve("ok")
    sink = Sink(name="hook", url=receiver.url, headers={"X-Team": "payments"})
    async with Notifier(config(sink)) as notifier:
        assert notifier.notify(ROLLOUT, STATUS, [PAUSED], now=NOW) == 1
        assert await notifier.drain(10)
    assert receiver.received == [
        {
            "rollout": "checkout",
            "namespace": "shop",
            "event": {"reason": "RolloutPaused", "type": "Normal", "message": "Rollout is paused (CanaryPauseStep)"},
            "phase": "Paused",
            "step": 1,
            "steps": 3,
            "weights": {"canary": 20, "stable": 80},
            "revision": "abc123",
            "time": "2026-11-29T12:00:00+00:00",
        }
    ]
    assert receiver.headers[0]["X-Team"] == "payments"
    assert notifier.stats.delivered == 1


@pytest.mark.asyncio
async def test_slack_sink_posts_text_and_blocks(serve: Serve) -> None:
    receiver = await serve("ok")
    async with Notifier(config(Sink(name="chat", kind=SinkKind.SLACK, url=receiver.url))) as notifier:
        notifier.notify(ROLLOUT, STATUS, [ABORTED], now=NOW)
        assert await notifier.drain(10)
    (body,) = receiver.received
    assert body["text"] == "shop/checkout: RolloutAborted: analysis run web-2-1 failed"
    assert body["blocks"][0]["text"]["text"].startswith(":x: *shop/checkout*: RolloutAborted")
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Weight*\ncanary 20% / stable 80%" in fields
    assert "*Step*\n1/3" in fields


@pytest.mark.asyncio
async def test_only_subscribed_reasons_are_sent(serve: Serve) -> None:
    receiver = await serve("ok")
    sink = Sink(name="hook", url=receiver.url)
    noise = Event(EventType.NORMAL, "AnalysisRunRunning", "started")
    async with Notifier(config(sink, reasons=["RolloutAborted"])) as notifier:
        assert notifier.notify(ROLLOUT, STATUS, [PAUSED, noise, ABORTED], now=NOW) == 1
        assert await notifier.drain(10)
    assert [body["event"]["reason"] for body in receiver.received] == ["RolloutAborted"]


@pytest.mark.asyncio
async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(serve: Serve) -> None:
    receiver = await serve("fail", "fail", "ok")
    sink = Sink(name="hook", url=receiver.url, retries=3, backoff_seconds=0.05)
    async with Notifier(config(sink)) as notifier:
        notifier.notify(ROLLOUT, STATUS, [PAUSED], now=NOW)
        assert await notifier.drain(10)
    assert receiver.attempts == 3
    assert len(receiver.received) == 1
    assert (notifier.stats.delivered, notifier.stats.retried, notifier.stats.failed) == (1, 2, 0)


@pytest.mark.asyncio
async def test_a_hanging_receiver_times_out_and_is_given_up_on_without_blocking_notify(serve: Serve) -> None:
    receiver = await serve("hang")
    sink = Sink(name="slow", url=receiver.url, timeout_seconds=0.2, retries=1, backoff_seconds=0.05)
    async with Notifier(config(sink)) as notifier:
        started = time.monotonic()
        notifier.notify(ROLLOUT, STATUS, [PAUSED, ABORTED], now=NOW)
        assert time.monotonic() - started < 0.1, "notify must only enqueue"
        assert await notifier.drain(10)
    assert receiver.attempts == 4  # 2 notifications x (1 + 1 retry)
    assert notifier.stats.failed == 2
    assert "no answer within 0.2 s" in notifier.stats.errors[-1]


@pytest.mark.asyncio
async def test_an_unreachable_receiver_is_counted_as_failed(serve: Serve) -> None:
    receiver = await serve("ok")
    dead = Sink(name="dead", url="http://127.0.0.1:9/hook", retries=0, timeout_seconds=2)
    live = Sink(name="live", url=receiver.url)
    async with Notifier(config(dead, live)) as notifier:
        notifier.notify(ROLLOUT, STATUS, [PAUSED], now=NOW)
        assert await notifier.drain(10)
    assert notifier.stats.failed == 1
    assert notifier.stats.delivered == 1
    assert notifier.stats.errors[0].startswith("dead: RolloutPaused not delivered after 1 attempts")


@pytest.mark.asyncio
async def test_a_full_queue_drops_instead_of_blocking(serve: Serve) -> None:
    receiver = await serve("ok")
    notifier = Notifier(config(Sink(name="hook", url=receiver.url), queue_size=2))
    queued = notifier.notify(ROLLOUT, STATUS, [PAUSED, PAUSED, PAUSED, ABORTED], now=NOW)  # workers not started
    assert queued == 2
    assert notifier.stats.dropped == 2
    await notifier.start()
    assert await notifier.drain(10)
    await notifier.close()
    assert len(receiver.received) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sinks": [{"name": "a", "url": "ftp://x"}]}, "sinks[0].url: Value error, 'ftp://x' is not an http"),
        ({"sinks": [{"name": "a", "url": "http://x", "timeout_seconds": 0}]}, "sinks[0].timeout_seconds: Input"),
        ({"sinks": [{"name": "a", "url": "http://x", "retry": 1}]}, "sinks[0].retry: Extra inputs"),
        (
            {"sinks": [{"name": "a", "url": "http://x"}], "subscriptions": [{"sinks": ["b"]}]},
            "subscriptions[0].sinks: unknown sink b (known: a)",
        ),
        ({"sinks": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}, "repeated: a"),
        ({"sinks": "nope"}, "sinks: Input should be a valid list"),
    ],
    ids=["scheme", "timeout", "unknown-field", "unknown-sink", "duplicate", "type"],
)
def test_bad_config_names_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        NotifyConfig.parse(data)
    assert message in str(caught.value)


def test_default_subscription_covers_the_moments_people_care_about() -> None:
    cfg = NotifyConfig.parse({"sinks": [{"name": "a", "url": "http://x"}], "subscriptions": [{"sinks": ["a"]}]})
    assert [s.name for s in cfg.sinks_for("RolloutCompleted")] == ["a"]
    assert [s.name for s in cfg.sinks_for("AnalysisRunFailed")] == ["a"]
    assert cfg.sinks_for("AnalysisRunRunning") == []


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "notify.yaml"
    good.write_text(
        "sinks:\n  - {name: chat, kind: slack, url: 'https://hooks.example/T1'}\nsubscriptions:\n  - sinks: [chat]\n"
    )
    assert NotifyConfig.load(good).sinks[0].kind == SinkKind.SLACK
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  - {name: chat, url: 'hooks.example'}\n")
    with pytest.raises(NotifyConfigError, match=r"bad\.yaml: invalid notification config:\n  sinks\[0\].url"):
        NotifyConfig.load(bad)
    with pytest.raises(NotifyConfigError, match=r"missing\.yaml: cannot read"):
        NotifyConfig.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("sinks: [\n")
    with pytest.raises(NotifyConfigError, match=r"broken\.yaml: not YAML"):
        NotifyConfig.load(broken)


@pytest.mark.asyncio
async def test_a_real_engine_pass_notifies_its_events(serve: Serve) -> None:
    receiver = await serve("ok")
    platform = FakePlatform(now=NOW)
    engine = Engine(platform=platform, router=None, runs=ScriptedRuns(now=NOW), store=MemoryStore())
    async with Notifier(config(Sink(name="hook", url=receiver.url), reasons=["*"])) as notifier:
        result = engine.run_pass(ROLLOUT, now=NOW)
        assert notifier.notify_pass(ROLLOUT, result, now=NOW) >= 1
        assert await notifier.drain(10)
    assert receiver.received[0]["event"]["reason"] == "RolloutCreated"
    assert receiver.received[0]["rollout"] == "checkout"
