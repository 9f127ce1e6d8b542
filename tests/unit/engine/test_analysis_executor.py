"""The in-process analysis executor: real template resolution, a tiny fake provider (our own seam), the real judge.

Time is virtual: each test calls ``tick(now)`` with the time it wants, so minutes of analysis take milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from headway.core import analysis as ladder
from headway.core import conditions
from headway.core.actions import RunKind, StartAnalysisRun, StartExperiment
from headway.engine.analysis import EXPERIMENTS_UNSUPPORTED, AnalysisExecutor, EnvironmentSecrets
from headway.platforms.fake import EPOCH
from headway.providers.base import MeasureContext, MetricProvider, ProviderResult
from headway.sim.analysis import SimAnalysis, TrafficCounts
from headway.sim.traffic import Profile, TrafficModel
from headway.spec.analysis import AnalysisPhase, AnalysisRun, AnalysisTemplate, Metric
from headway.spec.rollout import RolloutAnalysis, RolloutExperimentStep
from headway.spec.status import RunPhase
from tests.scenarios.harness import canary

ROLLOUT = canary()
P = AnalysisPhase
needs_judge = pytest.mark.skipif(
    importlib.util.find_spec("headway.core.judge") is None, reason="headway.core.judge is not in this build yet"
)


@dataclass
class Scripted:
    """A provider whose answers come from a function of (metric, call number); records every call."""

    answer: Callable[[Metric, int], ProviderResult]
    type: ClassVar[str] = "web"
    calls: list[tuple[str, str, MeasureContext | None]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    seen: list[Metric] = field(default_factory=list)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        self.calls.append(("start", metric.name, context))
        self.seen.append(metric)
        return self.answer(metric, len(self.calls))

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        self.calls.append(("poll", pending, context))
        return self.answer(metric, len(self.calls))

    async def cancel(self, metric: Metric, pending: str) -> None:
        self.cancelled.append(pending)


def values(*answers: Any) -> Callable[[Metric, int], ProviderResult]:
    """Answers in order (the last repeats); strings starting with '!' are errors, '...' is pending."""

    def answer(metric: Metric, call: int) -> ProviderResult:
        value = answers[min(call, len(answers)) - 1]
        if isinstance(value, str) and value.startswith("!"):
            return ProviderResult(error=value[1:])
        if value == "...":
            return ProviderResult(pending=f"handle-{call}")
        return ProviderResult(value=value)

    return answer


def template(name: str, *metrics: dict[str, Any], args: list[dict[str, Any]] | None = None) -> AnalysisTemplate:
    return AnalysisTemplate.model_validate(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {"metrics": list(metrics), "args": args or []},
        }
    )


def web(name: str = "success-rate", **fields: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"web": {"url": "http://127.0.0.1/{{args.service}}"}}, **fields}


def start(
    executor: AnalysisExecutor, *names: str, run: str = "web-1", args: list[dict[str, Any]] | None = None
) -> None:
    analysis = RolloutAnalysis.model_validate(
        {
            "templates": [{"templateName": n} for n in names],
            "args": args if args is not None else [{"name": "service", "value": "web"}],
        }
    )
    executor.start_analysis(
        ROLLOUT, StartAnalysisRun(name=run, kind=RunKind.STEP, analysis=analysis, hash="new", stable_hash="old")
    )


def phase(executor: AnalysisExecutor, run: str = "web-1") -> RunPhase:
    return executor.observe(ROLLOUT)[0][run].phase


async def play(executor: AnalysisExecutor, *, until: float, step: float = 1.0) -> list[RunPhase]:
    """Tick whenever something is due (at most every `step` seconds) until `until`; the phases seen."""
    now = EPOCH
    seen: list[RunPhase] = []
    while now <= EPOCH + timedelta(seconds=until):
        next_due = await executor.tick(now)
        seen.append(phase(executor))
        if next_due is None:
            break
        now = max(next_due, now + timedelta(seconds=step))
    return seen


def executor_for(provider: MetricProvider, *templates: AnalysisTemplate, **kw: Any) -> AnalysisExecutor:
    return AnalysisExecutor(templates={t.metadata.name: t for t in templates}, providers={"web": provider}, **kw)


# --- runs measured to a verdict ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_run_measures_count_times_at_its_interval_and_succeeds() -> None:
    provider = Scripted(values([0.99]))
    checks = template(
        "checks", web(interval="60s", count=3, successCondition="result[0] >= 0.95"), args=[{"name": "service"}]
    )
    executor = executor_for(provider, checks)
    start(executor, "checks")

    phases = await play(executor, until=600)

    assert phases == [RunPhase.RUNNING, RunPhase.RUNNING, RunPhase.SUCCESSFUL]
    starts = [call for call in provider.calls if call[0] == "start"]
    context = starts[0][2]
    assert context is not None
    assert [c[2].now - EPOCH for c in starts if c[2] is not None] == [
        timedelta(0),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert dict(context.args) == {"service": "web"} and context.run_name == "web-1"
    assert provider.seen[0].provider.web is not None
    assert provider.seen[0].provider.web.url == "http://127.0.0.1/web"


@pytest.mark.asyncio
async def test_failures_beyond_the_limit_fail_the_run_with_argos_message() -> None:
    provider = Scripted(values([0.99], [0.5], [0.5]))
    checks = template(
        "checks",
        web(interval="30s", successCondition="result[0] >= 0.95", failureLimit=1),
        args=[{"name": "service"}],
    )
    executor = executor_for(provider, checks)
    start(executor, "checks")

    phases = await play(executor, until=600)

    assert phases[-1] is RunPhase.FAILED
    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.message == 'Metric "success-rate" assessed Failed due to failed (2) > failureLimit (1)'


@pytest.mark.asyncio
async def test_errors_are_measurements_and_consecutive_errors_error_the_run() -> None:
    provider = Scripted(values("!connection refused"))
    checks = template("checks", web(interval="30s", consecutiveErrorLimit=1), args=[{"name": "service"}])
    executor = executor_for(provider, checks)
    start(executor, "checks")

    phases = await play(executor, until=600)

    assert phases[-1] is RunPhase.ERROR
    run = executor.run("web-1")
    assert run is not None and run.status is not None
    result = run.status.result("success-rate")
    assert result is not None
    assert [m.message for m in result.measurements] == ["connection refused", "connection refused"]
    # Argo retries an errored measurement after 10 s, whatever the interval.
    finished = [ladder.parse_time(m.finished_at) - EPOCH for m in result.measurements if m.finished_at]
    assert finished == [timedelta(0), timedelta(seconds=10)]


@pytest.mark.asyncio
async def test_a_pending_measurement_is_polled_until_it_answers() -> None:
    provider = Scripted(values("...", "...", 1.0))
    checks = template("checks", web(), args=[{"name": "service"}])
    executor = executor_for(provider, checks)
    start(executor, "checks")

    phases = await play(executor, until=600)

    assert phases[-1] is RunPhase.SUCCESSFUL
    assert [call[:2] for call in provider.calls] == [
        ("start", "success-rate"),
        ("poll", "handle-1"),
        ("poll", "handle-2"),
    ]


@pytest.mark.asyncio
async def test_terminate_cancels_in_flight_measurements_and_completes() -> None:
    provider = Scripted(values("..."))
    checks = template("checks", web(interval="1m"), args=[{"name": "service"}])
    executor = executor_for(provider, checks)
    start(executor, "checks")
    await executor.tick(EPOCH)

    executor.terminate_analysis(ROLLOUT, "web-1")
    executor.terminate_analysis(ROLLOUT, "web-1")
    await executor.tick(EPOCH + timedelta(seconds=5))

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert (state.phase, state.message) == (RunPhase.SUCCESSFUL, "Run Terminated")
    assert provider.cancelled == ["handle-1"]
    assert executor.next_due() is None


@pytest.mark.asyncio
async def test_a_provider_crash_or_timeout_is_an_error_measurement() -> None:
    class Broken:
        type: ClassVar[str] = "web"

        async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
            if metric.name == "crash":
                raise RuntimeError("boom")
            await asyncio.sleep(10)
            return ProviderResult(value=1)

        async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
            raise AssertionError("not pending")

        async def cancel(self, metric: Metric, pending: str) -> None:
            return None

    checks = template("checks", web("crash"), web("slow"), args=[{"name": "service"}])
    executor = executor_for(Broken(), checks, measure_timeout=0.05)
    start(executor, "checks")

    await executor.tick(EPOCH)

    run = executor.run("web-1")
    assert run is not None and run.status is not None
    messages = {r.name: r.measurements[-1].message for r in run.status.metric_results}
    assert messages == {
        "crash": "the provider failed: RuntimeError: boom",
        "slow": "the provider did not answer within 0.05s",
    }


def test_an_unknown_provider_type_errors_the_run_at_start_naming_the_known_ones() -> None:
    # A run that cannot measure at all is an error on the rollout at once, not five errored measurements later.
    checks = template("checks", {"name": "q", "provider": {"prometheus": {"query": "up"}}}, args=[{"name": "service"}])
    executor = executor_for(Scripted(values(1)), checks)

    start(executor, "checks")

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.ERROR
    assert state.message == "metrics[0]: metric 'q': no metric provider for type 'prometheus' (known: web)"
    assert executor.next_due() is None


def test_a_template_problem_errors_the_run_naming_the_field() -> None:
    executor = executor_for(Scripted(values(1)), template("checks", web(), args=[{"name": "service"}]))

    start(executor, "checks", args=[])

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.ERROR
    assert state.message == "args.service: is required by the template but was not supplied"


@pytest.mark.asyncio
async def test_secrets_reach_the_provider_but_never_the_run() -> None:
    def answer(metric: Metric, call: int) -> ProviderResult:
        assert metric.provider.web is not None
        return ProviderResult(error=f"401 for token {metric.provider.web.headers[0].value}")

    provider = Scripted(answer)
    checks = template(
        "checks",
        {
            "name": "api",
            "provider": {"web": {"url": "http://x", "headers": [{"key": "Authorization", "value": "{{args.token}}"}]}},
        },
        args=[{"name": "token", "valueFrom": {"secretKeyRef": {"name": "api-creds", "key": "token"}}}],
    )
    executor = executor_for(provider, checks, secrets=EnvironmentSecrets({"API_CREDS_TOKEN": "s3cret"}))
    start(executor, "checks", args=[])

    await executor.tick(EPOCH)

    run = executor.run("web-1")
    assert run is not None
    assert "s3cret" not in json.dumps(run.wire())
    assert run.status is not None
    result = run.status.result("api")
    assert result is not None and result.measurements[-1].message == "401 for token *****"
    assert provider.seen[0].provider.web is not None
    assert provider.seen[0].provider.web.headers[0].value == "s3cret"


@pytest.mark.asyncio
async def test_a_missing_secret_is_an_error_measurement() -> None:
    checks = template(
        "checks",
        web("api"),
        args=[{"name": "service", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
    )
    executor = executor_for(Scripted(values(1)), checks, secrets=EnvironmentSecrets({}))
    start(executor, "checks", args=[])

    await executor.tick(EPOCH)

    run = executor.run("web-1")
    assert run is not None and run.status is not None
    result = run.status.result("api")
    assert result is not None
    assert result.measurements[-1].message == (
        "args.service: secret 'nope' key 'k' not found (looked for environment variable NOPE_K)"
    )


@pytest.mark.asyncio
async def test_runs_are_plain_data_a_new_executor_can_continue() -> None:
    checks = template("checks", web(interval="60s", count=2), args=[{"name": "service"}])
    first = executor_for(Scripted(values(1)), checks)
    start(first, "checks")
    await first.tick(EPOCH)
    saved = first.run("web-1")
    assert saved is not None

    second = executor_for(Scripted(values(1)), checks)
    second.load(AnalysisRun.model_validate(json.loads(json.dumps(saved.wire()))))
    assert phase(second) is RunPhase.RUNNING
    await second.tick(EPOCH + timedelta(seconds=60))

    assert phase(second) is RunPhase.SUCCESSFUL


def test_experiments_are_reported_unsupported() -> None:
    executor = executor_for(Scripted(values(1)))
    experiment = RolloutExperimentStep.model_validate({"templates": [{"name": "baseline", "specRef": "stable"}]})

    executor.start_experiment(
        ROLLOUT, StartExperiment(name="exp", experiment=experiment, canary_hash="new", stable_hash="old")
    )

    state = executor.observe(ROLLOUT)[1]["exp"]
    assert (state.phase, state.message) == (RunPhase.ERROR, EXPERIMENTS_UNSUPPORTED)


# --- judge metrics ----------------------------------------------------------------------------------------------


def judge_template(**config: Any) -> AnalysisTemplate:
    return template(
        "judge",
        {"name": "errors", "interval": "60s", "provider": {"plugin": {ladder.JUDGE_PLUGIN: config}}},
    )


def windows(canary_rate: float, stable_rate: float, requests: int = 1000) -> Callable[[Metric, int], ProviderResult]:
    """Deterministic windows: 10% of traffic on the canary, bad events at the given rates."""

    def answer(metric: Metric, call: int) -> ProviderResult:
        canary, stable = requests // 10, requests - requests // 10
        return ProviderResult(
            value={
                "canaryRequests": canary,
                "canaryBad": round(canary * canary_rate),
                "stableRequests": stable,
                "stableBad": round(stable * stable_rate),
            }
        )

    return answer


def judge_executor(answer: Callable[[Metric, int], ProviderResult], **config: Any) -> AnalysisExecutor:
    provider = Scripted(answer)
    return AnalysisExecutor(templates={"judge": judge_template(**config)}, providers={ladder.JUDGE_PLUGIN: provider})


def judge_result(executor: AnalysisExecutor) -> Any:
    run = executor.run("web-1")
    assert run is not None and run.status is not None
    return run.status.result("errors")


@needs_judge
@pytest.mark.asyncio
async def test_the_judge_fails_a_canary_ten_times_worse_quickly() -> None:
    executor = judge_executor(windows(0.10, 0.01))
    start(executor, "judge", args=[])

    phases = await play(executor, until=3600)

    assert phases[-1] is RunPhase.FAILED
    assert len(phases) <= 5
    result = judge_result(executor)
    assert result.failed == 1
    assert float(result.metadata["pValue"]) <= 0.01
    assert float(result.metadata["lower"]) > 1
    assert result.metadata["explanation"].startswith("Fail")
    window = json.loads(result.measurements[-1].value)
    assert window == {"canaryRequests": 100, "canaryBad": 10, "stableRequests": 900, "stableBad": 9}


@needs_judge
@pytest.mark.asyncio
async def test_the_judge_passes_a_healthy_canary_once_exposure_suffices() -> None:
    executor = judge_executor(windows(0.01, 0.01), minCanaryRequests=500, toleratedRatio=2.0)
    start(executor, "judge", args=[])

    phases = await play(executor, until=6 * 3600)

    assert phases[-1] is RunPhase.SUCCESSFUL
    result = judge_result(executor)
    holds = [m for m in result.measurements if ladder.is_hold(m)]
    assert holds and all(m.phase is P.PENDING for m in holds)
    assert result.failed == 0 and result.successful == 1
    assert float(result.metadata["upper"]) < 2.0
    assert len(ladder.windows(result)) == result.count


@needs_judge
@pytest.mark.asyncio
async def test_no_data_is_no_evidence_the_judge_holds_and_never_fails() -> None:
    executor = judge_executor(windows(0.0, 0.0, requests=0))
    start(executor, "judge", args=[])

    phases = await play(executor, until=3600)

    assert set(phases) == {RunPhase.RUNNING}
    result = judge_result(executor)
    assert (result.failed, result.successful, result.inconclusive) == (0, 0, 0)
    assert result.count == len(phases) and all(ladder.is_hold(m) for m in result.measurements)
    assert len(result.measurements) == ladder.DEFAULT_MEASUREMENT_HISTORY_LIMIT
    assert len(ladder.windows(result)) == len(phases)


@needs_judge
@pytest.mark.asyncio
async def test_a_judge_with_a_count_that_never_decides_is_inconclusive() -> None:
    tpl = template(
        "judge",
        {"name": "errors", "interval": "60s", "count": 3, "provider": {"plugin": {ladder.JUDGE_PLUGIN: {}}}},
    )
    executor = AnalysisExecutor(templates={"judge": tpl}, providers={ladder.JUDGE_PLUGIN: Scripted(windows(0, 0, 0))})
    start(executor, "judge", args=[])

    phases = await play(executor, until=3600)

    assert phases[-1] is RunPhase.INCONCLUSIVE
    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.message is not None
    assert state.message.startswith(
        'Metric "errors" assessed Inconclusive due to count (3) reached while the judge still held: '
        '"Error Message: Hold'
    )


@needs_judge
@pytest.mark.asyncio
async def test_a_bad_judge_window_is_an_error_measurement_and_a_bad_judge_config_errors_the_run_at_start() -> None:
    # A bad config is now refused when the run starts (`ladder.validate_run`), naming the key, instead of being an
    # Error measurement at every window until consecutiveErrorLimit.
    bad_window = judge_executor(values({"canaryRequests": 1}))
    bad_config = judge_executor(windows(0.01, 0.01), alpha=2)
    misspelt = judge_executor(windows(0.01, 0.01), tolerated_ratio=1.1)
    for executor in (bad_window, bad_config, misspelt):
        start(executor, "judge", args=[])
        await executor.tick(EPOCH)

    assert (
        judge_result(bad_window).measurements[-1].message
        == "judge window field canaryBad must be a count >= 0; got None"
    )
    for executor, expected in (
        (bad_config, "provider.plugin['headway.dev/judge']: JudgeConfig.alpha"),
        (misspelt, "provider.plugin['headway.dev/judge'].tolerated_ratio: not a judge setting"),
    ):
        state = executor.observe(ROLLOUT)[0]["web-1"]
        assert state.phase is RunPhase.ERROR
        assert state.message.startswith(f"Analysis spec invalid: metrics[0].{expected}"), state.message
    assert "did you mean 'toleratedRatio'?" in misspelt.observe(ROLLOUT)[0]["web-1"].message


@needs_judge
@pytest.mark.asyncio
async def test_a_judge_can_count_through_another_provider_such_as_the_proxy() -> None:
    def counters(metric: Metric, call: int) -> ProviderResult:
        return ProviderResult(
            value={
                "canary": {"requests": 100, "errors": 0, "slow": 30},
                "stable": {"requests": 900, "errors": 0, "slow": 9},
            }
        )

    proxy = Scripted(counters)
    config = {"source": "proxy", "proxy": {"window": "60s"}, "badEvents": "slow"}
    executor = AnalysisExecutor(templates={"judge": judge_template(**config)}, providers={"proxy": proxy})
    start(executor, "judge", args=[])

    phases = await play(executor, until=3600)

    assert phases[-1] is RunPhase.FAILED
    assert proxy.seen[0].provider.plugin == {"proxy": {"window": "60s"}}


# --- in the simulator: windows from the traffic model --------------------------------------------------------


def simulated(canary_error_rate: float) -> tuple[SimAnalysis, TrafficModel]:
    profiles = {"new": Profile(error_rate=canary_error_rate), "old": Profile(error_rate=0.01)}
    traffic = TrafficModel(rps=200, profile=lambda pod_hash: profiles[pod_hash], now=EPOCH)
    counts = TrafficCounts(traffic, hashes=lambda: ("new", "old"))
    runs = SimAnalysis(templates={"judge": judge_template()}, providers={ladder.JUDGE_PLUGIN: counts}, now=EPOCH)
    return runs, traffic


def simulate_minutes(runs: SimAnalysis, traffic: TrafficModel, minutes: int) -> list[RunPhase]:
    phases = []
    for minute in range(1, minutes + 1):
        now = EPOCH + timedelta(minutes=minute)
        traffic.advance(now, {"new": 0.2, "old": 0.8}, {"new": 1, "old": 1})
        runs.advance(now)
        phases.append(runs.observe(ROLLOUT)[0]["web-1"].phase)
        if phases[-1].completed:
            break
    return phases


@needs_judge
@pytest.mark.parametrize(("rate", "verdict"), [(0.10, RunPhase.FAILED), (0.01, RunPhase.SUCCESSFUL)])
def test_the_simulator_judges_its_own_traffic(rate: float, verdict: RunPhase) -> None:
    runs, traffic = simulated(rate)
    runs.start_analysis(
        ROLLOUT,
        StartAnalysisRun(
            name="web-1",
            kind=RunKind.STEP,
            analysis=RolloutAnalysis.model_validate({"templates": [{"templateName": "judge"}]}),
            hash="new",
            stable_hash="old",
        ),
    )

    phases = simulate_minutes(runs, traffic, 120)
    runs.close()

    assert phases[-1] is verdict
    run = runs.executor.run("web-1")
    assert run is not None and run.status is not None
    result = run.status.result("errors")
    assert result is not None
    first, *rest = ladder.windows(result)
    assert first == (0, 0, 0, 0)  # the first measurement only marks where the windows start
    assert all(window[0] == 2400 and window[2] == 9600 for window in rest)


def test_runs_carry_the_rollouts_run_metadata_and_their_owner() -> None:
    executor = executor_for(Scripted(values(1)), template("checks", web(), args=[{"name": "service"}]))
    analysis = RolloutAnalysis.model_validate(
        {
            "templates": [{"templateName": "checks"}],
            "args": [{"name": "service", "value": "web"}],
            "analysisRunMetadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        }
    )

    executor.start_analysis(
        ROLLOUT, StartAnalysisRun(name="r", kind=RunKind.BACKGROUND, analysis=analysis, hash="new", stable_hash="old")
    )

    run = executor.run("r")
    assert run is not None
    assert run.metadata.labels == {"team": "a", "rollouts-pod-template-hash": "new", "headway.dev/kind": "background"}
    assert run.metadata.annotations == {"note": "x", "headway.dev/rollout": "default/web"}
    assert executor.owner("r") == "default/web" and executor.owner("ghost") is None


# --- failing closed: any exception is an Error, one run at a time ----------------------------------------------


@pytest.mark.asyncio
async def test_an_evaluator_that_raises_is_an_error_measurement_counted_toward_the_error_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def evaluate(compiled: Any, result: object) -> bool:
        raise TypeError("the evaluator choked")

    monkeypatch.setattr(conditions, "evaluate", evaluate)
    checks = template(
        "checks",
        web(interval="30s", consecutiveErrorLimit=2, successCondition="result > 0"),
        args=[{"name": "service"}],
    )
    executor = executor_for(Scripted(values(1)), checks)
    start(executor, "checks")

    phases = await play(executor, until=600)

    assert phases == [RunPhase.RUNNING, RunPhase.RUNNING, RunPhase.ERROR]
    run = executor.run("web-1")
    assert run is not None and run.status is not None
    result = run.status.result("success-rate")
    assert result is not None
    expected = "evaluating the conditions failed: TypeError: the evaluator choked"
    assert [m.message for m in result.measurements] == [expected] * 3
    assert run.status.message is not None and "consecutiveErrors (3) > consecutiveErrorLimit (2)" in run.status.message


def test_a_condition_whose_compilation_raises_errors_the_run_at_start_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = conditions.compile_condition

    def compile_condition(text: str) -> Any:
        if "boom" in text:
            raise TypeError("compile(): incompatible function arguments")
        return real(text)

    monkeypatch.setattr(conditions, "compile_condition", compile_condition)
    checks = template(
        "checks", web(successCondition="result > 0", failureCondition="result == 'boom'"), args=[{"name": "service"}]
    )
    executor = executor_for(Scripted(values(1)), checks)

    start(executor, "checks")

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.ERROR
    assert state.message == (
        "Analysis spec invalid: metrics[0].failureCondition could not be checked: "
        "TypeError: compile(): incompatible function arguments"
    )


@pytest.mark.asyncio
async def test_a_run_the_ladder_raises_on_is_error_and_the_other_runs_are_still_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_due = ladder.due

    def due(spec: Any, status: Any, now: Any) -> list[ladder.Due]:
        if any(metric.name == "cursed" for metric in spec.metrics):
            raise RecursionError("maximum recursion depth exceeded")
        return real_due(spec, status, now)

    monkeypatch.setattr(ladder, "due", due)
    executor = executor_for(
        Scripted(values(0.5)),
        template("cursed", web("cursed"), args=[{"name": "service"}]),
        template("checks", web(successCondition="result >= 0.9"), args=[{"name": "service"}]),
    )
    start(executor, "cursed", run="cursed-1")
    start(executor, "checks", run="checks-1")

    assert await executor.tick(EPOCH) is None  # nothing escapes, and nothing is left to measure

    observed = executor.observe(ROLLOUT)[0]
    assert observed["cursed-1"].phase is RunPhase.ERROR
    assert observed["cursed-1"].message == (
        "the analysis could not be evaluated: RecursionError: maximum recursion depth exceeded"
    )
    assert observed["checks-1"].phase is RunPhase.FAILED


@pytest.mark.asyncio
async def test_provider_misbehaviour_of_every_kind_is_an_error_measurement() -> None:
    class Odd:
        type: ClassVar[str] = "web"

        def start(self, metric: Metric, context: MeasureContext) -> Any:
            if metric.name == "sync":
                raise ValueError("raised before any await")
            if metric.name == "plain":
                return ProviderResult(value=1)  # not awaitable

            async def answer() -> Any:
                return 0.99  # a bare value, not a ProviderResult

            return answer()

        async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
            raise AssertionError("not pending")

        async def cancel(self, metric: Metric, pending: str) -> None:
            return None

    checks = template("checks", web("sync"), web("plain"), web("bare"), args=[{"name": "service"}])
    executor = executor_for(cast(MetricProvider, Odd()), checks)
    start(executor, "checks")

    await executor.tick(EPOCH)

    run = executor.run("web-1")
    assert run is not None and run.status is not None
    messages = {r.name: (r.measurements[-1].phase, r.measurements[-1].message) for r in run.status.metric_results}
    assert messages["sync"] == (P.ERROR, "the provider failed: ValueError: raised before any await")
    assert messages["plain"][0] is P.ERROR and "TypeError" in (messages["plain"][1] or "")
    assert messages["bare"] == (P.ERROR, "the provider answered float, not a measurement result")


def test_a_provider_that_cannot_be_built_errors_the_run_at_start() -> None:
    class Providers(dict[str, MetricProvider]):
        def __getitem__(self, kind: str) -> MetricProvider:
            raise RuntimeError("prometheus address is not configured")

        def get(self, kind: str, default: Any = None) -> Any:
            return self[kind]

    checks = template("checks", web(), args=[{"name": "service"}])
    executor = AnalysisExecutor(templates={"checks": checks}, providers=Providers())

    start(executor, "checks")

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.ERROR
    assert state.message == (
        "metrics[0]: metric 'success-rate': the metric provider for type 'web' could not be built: "
        "RuntimeError: prometheus address is not configured"
    )


def test_a_template_store_that_raises_errors_the_run_instead_of_the_pass() -> None:
    class Broken(dict[str, AnalysisTemplate]):
        def get(self, key: str, default: Any = None) -> Any:
            raise ValueError("stored template is not readable")

    executor = AnalysisExecutor(templates=Broken(), providers={"web": Scripted(values(1))})

    start(executor, "checks")

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.ERROR
    assert state.message == "templates: could not be resolved: ValueError: stored template is not readable"


@pytest.mark.asyncio
async def test_a_secret_resolver_that_crashes_is_an_error_measurement_that_reveals_nothing() -> None:
    def resolver(namespace: str, name: str, key: str) -> str:
        raise OSError(f"permission denied reading /secrets/{name}/{key}")

    checks = template(
        "checks",
        {"name": "api", "provider": {"web": {"url": "http://x/{{args.token}}"}}},
        args=[{"name": "token", "valueFrom": {"secretKeyRef": {"name": "api-creds", "key": "token"}}}],
    )
    executor = executor_for(Scripted(values(1)), checks, secrets=resolver)
    start(executor, "checks", args=[])

    await executor.tick(EPOCH)

    run = executor.run("web-1")
    assert run is not None and run.status is not None
    result = run.status.result("api")
    assert result is not None
    assert result.measurements[-1].message == "args.token: reading the secret failed: OSError"


@pytest.mark.asyncio
async def test_a_run_in_progress_tells_the_rollout_what_evidence_it_lacks() -> None:
    provider = Scripted(values("!connection refused", 0.99))
    checks = template("checks", web(interval="30s", successCondition="result >= 0.95"), args=[{"name": "service"}])
    executor = executor_for(provider, checks)
    start(executor, "checks")

    assert executor.observe(ROLLOUT)[0]["web-1"].evidence_gap == "it has not started measuring"
    await executor.tick(EPOCH)
    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert state.phase is RunPhase.RUNNING
    assert state.evidence_gap == "metric 'success-rate': its last measurement errored: connection refused"
    await executor.tick(EPOCH + timedelta(seconds=10))
    assert executor.observe(ROLLOUT)[0]["web-1"].evidence_gap == ""


def test_a_saved_run_that_no_longer_reads_back_is_held_as_an_error_of_its_rollout() -> None:
    executor = executor_for(Scripted(values(1)))
    data = {
        "metadata": {"name": "web-1", "namespace": "default", "annotations": {"headway.dev/rollout": "default/web"}}
    }

    executor.load_unreadable("web-1", data, "the saved run is not readable: spec: Field required")

    state = executor.observe(ROLLOUT)[0]["web-1"]
    assert (state.phase, state.message) == (RunPhase.ERROR, "the saved run is not readable: spec: Field required")
    assert executor.next_due() is None


@needs_judge
@pytest.mark.asyncio
async def test_a_judge_that_crashes_is_an_error_measurement_and_records_no_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judging = importlib.import_module("headway.core.judge")

    def judge(windows: Any, config: Any) -> Any:
        raise FloatingPointError("overflow in the e-process")

    monkeypatch.setattr(judging, "judge", judge)
    executor = judge_executor(windows(0.01, 0.01))
    start(executor, "judge", args=[])

    await executor.tick(EPOCH)

    result = judge_result(executor)
    assert result.measurements[-1].phase is P.ERROR
    assert result.measurements[-1].message == "judging the window failed: FloatingPointError: overflow in the e-process"
    assert ladder.windows(result) == []


@pytest.mark.parametrize(("name", "key"), [("..", "token"), ("creds", "../token"), ("creds", "/etc/hostname")])
def test_the_embedded_secret_resolver_reads_no_file_outside_its_directory(tmp_path: Path, name: str, key: str) -> None:
    (tmp_path / "secrets" / "creds").mkdir(parents=True)
    (tmp_path / "secrets" / "creds" / "token").write_text("inside\n")
    (tmp_path / "token").write_text("outside\n")
    resolver = EnvironmentSecrets({}, tmp_path / "secrets")

    assert resolver("default", "creds", "token") == "inside"
    with pytest.raises(LookupError, match="is not a valid Secret name and key"):
        resolver("default", name, key)
