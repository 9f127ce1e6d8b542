"""Analysis fails closed (issue #10, case 1): a crashing, hanging or unstartable analysis never lets a rollout
promote, and one run's failure never keeps another run out of the store.

Embedded mode as it is wired: a real `Runner`, the real analysis hook and executor from
`headway.bootstrap.embedded.wire_analysis`, and a SQLite state directory; only the processes are the in-memory fake
platform, so minutes of rollout run in virtual time. Templates are written to the store directly, as a state
directory from before admission checked conditions would hold them (an admission check may refuse to apply them
now; the runtime must fail closed either way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from headway.bootstrap.embedded import wire_analysis
from headway.engine.reconcile import Engine
from headway.platforms.fake import EPOCH, FakePlatform
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.runtimes.embedded.analysis import ANALYSIS_RUN
from headway.runtimes.embedded.proxies import Proxies
from headway.runtimes.embedded.runner import Runner, put
from headway.spec.analysis import AnalysisPhase, AnalysisRun, Metric
from headway.spec.status import Phase, RolloutStatus
from headway.stores.sqlite import SqliteStore

pytestmark = pytest.mark.asyncio

LONE_SURROGATE = "result == '\ud800'"
"""A condition the expression library cannot even be handed (it raises TypeError, not a compile error)."""


def rollout_body(name: str, *, steps: list[dict[str, Any]], background: str | None = None) -> dict[str, Any]:
    canary: dict[str, Any] = {"steps": steps}
    if background is not None:
        canary["analysis"] = {"templates": [{"templateName": background}]}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "v1"}]},
            },
            "strategy": {"canary": canary},
        },
    }


def template_body(name: str, *metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"metrics": list(metrics)},
    }


def static_metric(name: str, values: list[Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"plugin": {"static": {"values": values}}}, **fields}


def plugin_metric(name: str, plugin: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"plugin": {plugin: {}}}, **fields}


PAUSED_CANARY: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": 10}}]


@dataclass
class Crashing:
    """A provider whose every call raises (a provider bug)."""

    type: ClassVar[str] = "crash"
    calls: int = 0

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        self.calls += 1
        raise RuntimeError("the provider blew up")

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        raise RuntimeError("the provider blew up")

    async def cancel(self, metric: Metric, pending: str) -> None:
        return None


@dataclass
class Hanging:
    """A provider that never answers."""

    type: ClassVar[str] = "hang"
    calls: int = 0

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        self.calls += 1
        await asyncio.sleep(3600)
        return ProviderResult(value=1)

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        await asyncio.sleep(3600)
        return ProviderResult(value=1)

    async def cancel(self, metric: Metric, pending: str) -> None:
        return None


@dataclass
class Embedded:
    """The embedded runner over a SQLite state directory, the real analysis hook, fake processes, virtual time."""

    state_dir: Path
    now: datetime = EPOCH
    extra_providers: dict[str, MetricProvider] = field(default_factory=dict)
    measure_timeout: float | None = None

    def __post_init__(self) -> None:
        self.store = SqliteStore(self.state_dir)
        self.platform = FakePlatform(startup_seconds=1.0)
        self.executor, self.analysis_tick = wire_analysis(self.store, Proxies(self.state_dir), self.state_dir)
        providers = cast(dict[str, MetricProvider], self.executor.providers)
        providers.update(self.extra_providers)
        if self.measure_timeout is not None:
            self.executor.measure_timeout = self.measure_timeout
        engine = Engine(platform=self.platform, router=None, runs=self.executor, store=self.store)
        self.runner = Runner(engine, self.store, hooks=[self._advance, self.analysis_tick], clock=lambda: self.now)

    async def _advance(self, now: datetime) -> None:
        self.platform.advance(now)

    def close(self) -> None:
        self.store.close()

    def template(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        put(self.store, "AnalysisTemplate", f"{meta['namespace']}/{meta['name']}", body)

    def rollout(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        put(self.store, "Rollout", f"{meta['namespace']}/{meta['name']}", body)
        self.runner.wake()

    def deploy(self, name: str, image: str) -> None:
        rollout = self.runner.rollout(name)
        wire = rollout.wire()
        wire["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.rollout(wire)

    def status(self, name: str) -> RolloutStatus:
        return self.runner.status(self.runner.rollout(name))

    async def until(
        self, done: Callable[[], bool], *, limit: float = 300.0, each: Callable[[], None] | None = None
    ) -> None:
        """Turn the runner one virtual second at a time until ``done`` (fail after ``limit`` virtual seconds)."""
        end = self.now + timedelta(seconds=limit)
        while self.now < end:
            await self.runner.turn()
            if each is not None:
                each()
            if done():
                return
            self.now += timedelta(seconds=1)
        raise AssertionError(f"not done within {limit:g} virtual seconds")

    def saved_run(self, name: str) -> AnalysisRun | None:
        data, _ = self.store.get_document(ANALYSIS_RUN, name)
        return AnalysisRun.model_validate(data) if data is not None else None

    def runs_of(self, rollout: str) -> list[AnalysisRun]:
        owner = f"default/{rollout}"
        return [
            run
            for name in self.executor.runs
            if self.executor.owner(name) == owner and (run := self.executor.run(name))
        ]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[..., Embedded]]:
    opened: list[Embedded] = []

    def open_(**options: Any) -> Embedded:
        world = Embedded(tmp_path / "state", **options)
        opened.append(world)
        return world

    yield open_
    for world in opened:
        world.close()


def settled(world: Embedded, name: str) -> Callable[[], bool]:
    """Healthy on the new revision, or aborted: the update is over one way or the other."""

    def check() -> bool:
        status = world.status(name)
        return status.abort or (status.phase == Phase.HEALTHY and status.stable_rs == status.current_pod_hash)

    return check


def never_promoted(world: Embedded, name: str, old_stable: str | None) -> Callable[[], None]:
    def check() -> None:
        status = world.status(name)
        assert status.stable_rs == old_stable, f"{name} was promoted: {status.phase} {status.message}"

    return check


async def start_healthy(world: Embedded, name: str, body: dict[str, Any]) -> str:
    """Apply ``body`` and wait until its first revision is Healthy; the stable hash."""
    world.rollout(body)
    await world.until(lambda: world.status(name).phase == Phase.HEALTHY and world.status(name).stable_rs is not None)
    stable = world.status(name).stable_rs
    assert stable is not None
    return stable


# --- the crash of case 1 --------------------------------------------------------------------------------------


async def test_a_condition_the_evaluator_crashes_on_aborts_the_rollout_never_promotes_it(
    embedded: Callable[..., Embedded],
) -> None:
    world = embedded()
    world.template(template_body("odd", static_metric("rate", [1], interval="2s", successCondition=LONE_SURROGATE)))
    stable = await start_healthy(world, "web", rollout_body("web", steps=PAUSED_CANARY, background="odd"))

    world.deploy("web", "v2")
    await world.until(settled(world, "web"), each=never_promoted(world, "web", stable))

    status = world.status("web")
    assert status.abort and status.phase == Phase.DEGRADED
    assert status.stable_rs == stable
    [run] = world.runs_of("web")
    assert run.status is not None and run.status.phase is AnalysisPhase.ERROR
    assert "metrics[0].successCondition" in (run.status.message or "")
    assert run.metadata.name in status.message and "Error" in status.message
    await world.runner.turn()  # runs are saved by the hook at the start of a turn
    saved = world.saved_run(run.metadata.name)
    assert saved is not None and saved.status is not None and saved.status.phase is AnalysisPhase.ERROR
    aborted = [e for e in world.runner.events if e.reason == "RolloutAborted"]
    assert aborted and "successCondition" in aborted[-1].message


async def test_a_provider_that_raises_errors_the_run_after_the_consecutive_error_limit_and_aborts(
    embedded: Callable[..., Embedded],
) -> None:
    crashing = Crashing()
    world = embedded(extra_providers={"crash": crashing})
    world.template(template_body("crashy", plugin_metric("rate", "crash", interval="2s")))
    stable = await start_healthy(world, "web", rollout_body("web", steps=PAUSED_CANARY, background="crashy"))

    world.deploy("web", "v2")
    # The steps are done long before the fifth error (errors are retried every 10 s): the promotion must wait.
    await world.until(settled(world, "web"), each=never_promoted(world, "web", stable))

    status = world.status("web")
    assert status.abort and status.phase == Phase.DEGRADED
    [run] = world.runs_of("web")
    assert run.status is not None and run.status.phase is AnalysisPhase.ERROR
    assert "consecutiveErrors (5) > consecutiveErrorLimit (4)" in (run.status.message or "")
    assert "the provider failed: RuntimeError: the provider blew up" in (run.status.message or "")
    assert crashing.calls == 5
    assert "the provider blew up" in status.message


async def test_a_provider_that_hangs_beyond_its_timeout_errors_the_run_and_aborts(
    embedded: Callable[..., Embedded],
) -> None:
    hanging = Hanging()
    world = embedded(extra_providers={"hang": hanging}, measure_timeout=0.2)
    world.template(template_body("slow", plugin_metric("rate", "hang", interval="2s", consecutiveErrorLimit=6)))
    stable = await start_healthy(world, "web", rollout_body("web", steps=PAUSED_CANARY, background="slow"))

    world.deploy("web", "v2")
    # The steps are done long before the seventh timeout: a run with nothing but timeouts must not let the rollout
    # through.
    await world.until(settled(world, "web"), each=never_promoted(world, "web", stable))

    status = world.status("web")
    assert status.abort and status.phase == Phase.DEGRADED
    [run] = world.runs_of("web")
    assert run.status is not None and run.status.phase is AnalysisPhase.ERROR
    result = run.status.result("rate")
    assert result is not None
    assert [m.message for m in result.measurements] == ["the provider did not answer within 0.2s"] * 7
    assert hanging.calls == 7
    assert "did not answer within 0.2s" in status.message


async def test_a_run_that_cannot_start_is_an_error_on_the_rollout(embedded: Callable[..., Embedded]) -> None:
    world = embedded()
    world.template(template_body("unknown", plugin_metric("rate", "nosuchprovider")))
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "unknown"}]}}]
    stable = await start_healthy(world, "web", rollout_body("web", steps=steps))

    world.deploy("web", "v2")
    await world.until(settled(world, "web"), limit=30, each=never_promoted(world, "web", stable))

    status = world.status("web")
    assert status.abort and status.phase == Phase.DEGRADED
    [run] = world.runs_of("web")
    assert run.status is not None and run.status.phase is AnalysisPhase.ERROR
    assert "the embedded mode cannot run the 'nosuchprovider' metric provider" in (run.status.message or "")
    assert "nosuchprovider" in status.message
    assert not run.status.metric_results  # Error at start, not after five errored measurements


async def test_a_missing_template_is_an_error_on_the_rollout(embedded: Callable[..., Embedded]) -> None:
    world = embedded()
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "nowhere"}]}}]
    stable = await start_healthy(world, "web", rollout_body("web", steps=steps))

    world.deploy("web", "v2")
    await world.until(settled(world, "web"), limit=30, each=never_promoted(world, "web", stable))

    status = world.status("web")
    assert status.abort and "nowhere" in status.message


# --- one run's failure is not another's -----------------------------------------------------------------------

JUDGE_FAILS = {
    "name": "errors",
    "interval": "2s",
    "provider": {
        "plugin": {
            "headway.dev/judge": {
                "source": "static",
                "static": {
                    "values": [{"canaryRequests": 2000, "canaryBad": 400, "stableRequests": 2000, "stableBad": 4}]
                },
            }
        }
    },
}


async def test_another_rollouts_failed_run_and_its_judge_evidence_are_saved_and_survive_a_restart(
    embedded: Callable[..., Embedded],
) -> None:
    crashing = Crashing()
    world = embedded(extra_providers={"crash": crashing})
    # "odd" crashes the evaluator; "crashy" keeps failing at every measurement without reaching its error limit
    world.template(template_body("odd", static_metric("rate", [1], interval="2s", successCondition=LONE_SURROGATE)))
    world.template(template_body("crashy", plugin_metric("rate", "crash", interval="2s", consecutiveErrorLimit=1000)))
    world.template(template_body("judge", JUDGE_FAILS))
    stable_a = await start_healthy(world, "a", rollout_body("a", steps=PAUSED_CANARY, background="odd"))
    stable_b = await start_healthy(world, "b", rollout_body("b", steps=PAUSED_CANARY, background="crashy"))
    judged: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "judge"}]}}]
    stable_c = await start_healthy(world, "c", rollout_body("c", steps=judged))

    for name in ("a", "b", "c"):
        world.deploy(name, "v2")
    await world.until(lambda: world.status("c").abort and world.status("a").abort)

    [judge_run] = world.runs_of("c")
    name = judge_run.metadata.name
    [crashy_run] = world.runs_of("b")
    assert crashy_run.status is not None and crashy_run.status.phase is AnalysisPhase.RUNNING  # still crashing
    assert world.status("b").stable_rs == stable_b  # held: its run has only errors to show
    assert world.status("a").stable_rs == stable_a and world.status("c").stable_rs == stable_c
    world.close()

    reopened = embedded()  # a restart on the same state directory
    saved = reopened.saved_run(name)
    assert saved is not None and saved.status is not None
    assert saved.status.phase is AnalysisPhase.FAILED
    result = saved.status.result("errors")
    assert result is not None and float(result.metadata["pValue"]) < 0.01
    assert reopened.executor.run(name) == saved
    assert reopened.status("c").abort


async def test_a_run_that_cannot_be_saved_does_not_keep_the_others_out_of_the_store(
    embedded: Callable[..., Embedded], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = embedded()
    world.template(template_body("checks", static_metric("rate", [0.5], successCondition="result >= 0.9")))
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "checks"}]}}]
    await start_healthy(world, "a", rollout_body("a", steps=steps))
    await start_healthy(world, "b", rollout_body("b", steps=steps))
    real_put = world.store.put_document
    refused: list[str] = []

    def put_document(kind: str, key: str, body: Any, expected_version: str) -> str:
        if kind == ANALYSIS_RUN and key.startswith("a-"):
            refused.append(key)
            raise OSError("disk full")
        return real_put(kind, key, body, expected_version)

    monkeypatch.setattr(world.store, "put_document", put_document)
    world.deploy("a", "v2")
    world.deploy("b", "v2")
    await world.until(lambda: world.status("b").abort)

    [run_b] = world.runs_of("b")
    saved_b = world.saved_run(run_b.metadata.name)
    assert saved_b is not None and saved_b.status is not None and saved_b.status.phase is AnalysisPhase.FAILED
    assert refused and world.saved_run(refused[0]) is None

    monkeypatch.setattr(world.store, "put_document", real_put)
    await world.runner.turn()
    saved_a = world.saved_run(refused[0])
    assert saved_a is not None and saved_a.status is not None and saved_a.status.phase is AnalysisPhase.FAILED


async def test_a_provider_that_hangs_holds_only_its_own_run_not_the_other_rollouts(
    embedded: Callable[..., Embedded],
) -> None:
    hanging = Hanging()
    world = embedded(extra_providers={"hang": hanging}, measure_timeout=120.0)
    world.template(template_body("slow", plugin_metric("rate", "hang", interval="2s")))
    world.template(template_body("checks", static_metric("rate", [0.5], successCondition="result >= 0.9")))
    stable_a = await start_healthy(world, "a", rollout_body("a", steps=PAUSED_CANARY, background="slow"))
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "checks"}]}}]
    await start_healthy(world, "b", rollout_body("b", steps=steps))

    world.deploy("a", "v2")
    world.deploy("b", "v2")
    began = time.monotonic()
    await world.until(lambda: world.status("b").abort, limit=60, each=never_promoted(world, "a", stable_a))

    assert time.monotonic() - began < 60  # far less than the 120 s the hung measurement may take
    assert hanging.calls == 1  # a's first measurement is still in flight...
    assert world.status("a").stable_rs == stable_a and "has not started measuring" in world.status("a").message
    await world.runner.turn()
    [run_b] = world.runs_of("b")
    saved = world.saved_run(run_b.metadata.name)  # ...while b's verdict is measured, acted on and saved
    assert saved is not None and saved.status is not None and saved.status.phase is AnalysisPhase.FAILED
