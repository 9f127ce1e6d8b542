"""Scripted measurements for tests, demos and dry runs: the provider equivalent of httpx's MockTransport.

A script is either a sequence of steps taken in order (the last step repeats once the script runs out) or a
function of the call number. A step is a plain value (the measurement's value), a `Fail` (the query failed),
a `Wait` (the measurement answers pending that many times, counting the call that met it, and then takes the
next step) or a whole `ProviderResult` (returned as is). Every call to
`start` or `poll` of the same metric in the same run takes one step, so a script reads like the timeline of
measurements it produces; runs and metrics do not share a counter.

A manifest can carry its own script through Argo's plugin provider block, which keeps the template valid for
Argo's schema::

    provider:
      plugin:
        static:
          values: [0.99, 0.98, {error: "scrape failed"}, {wait: 2}, 0.97]

The script given to the constructor, when there is one, wins over the manifest's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from headway.providers.base import MeasureContext, ProviderResult
from headway.spec.analysis import Metric

PLUGIN_NAME = "static"
"""The key under ``provider.plugin`` that selects this provider from a manifest."""


@dataclass(frozen=True)
class Fail:
    """A step that fails the query with `message`."""

    message: str


@dataclass(frozen=True)
class Wait:
    """A step that answers pending `polls` times (at least once) before the next step is taken."""

    polls: int = 1


Step = Any
"""A plain value, a `Fail`, a `Wait`, or a `ProviderResult`."""

Script = Sequence[Step] | Callable[[int], Step]
"""Steps in order (the last repeats), or a function from the 0-based call number to a step."""


def _step_from_wire(raw: object, where: str) -> Step:
    """One manifest step: ``{error: msg}`` fails, ``{wait: n}`` waits, anything else is the value."""
    if isinstance(raw, dict) and set(raw) == {"error"}:
        return Fail(str(raw["error"]))
    if isinstance(raw, dict) and set(raw) == {"wait"}:
        polls = raw["wait"]
        if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
            raise ValueError(f"{where}.wait: {polls!r} is not a non-negative integer")
        return Wait(polls)
    return raw


def script_from_metric(metric: Metric) -> list[Step] | str:
    """The script written in ``provider.plugin.static.values``, or a message naming what is missing."""
    where = f"metric {metric.name!r}: provider.plugin.{PLUGIN_NAME}.values"
    config = (metric.provider.plugin or {}).get(PLUGIN_NAME)
    values = config.get("values") if isinstance(config, dict) else None
    if not isinstance(values, list) or not values:
        return f"{where} must be a non-empty list of values"
    try:
        return [_step_from_wire(raw, f"{where}[{index}]") for index, raw in enumerate(values)]
    except ValueError as error:
        return str(error)


class StaticProvider:
    """Returns scripted values, errors and pending measurements; never touches the network."""

    type: ClassVar[str] = PLUGIN_NAME

    def __init__(self, script: Script | None = None) -> None:
        self._script = script
        self._calls: dict[tuple[str, str], int] = {}
        self._pending: dict[str, tuple[tuple[str, str], int]] = {}
        self._handles = itertools.count(1)

    def calls(self, metric: str, run: str = "") -> int:
        """How many steps `metric` has taken in `run` (for assertions in tests)."""
        return self._calls.get((run, metric), 0)

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        """Take the next step of the script for this metric and run."""
        return self._take((context.run_name, metric.name), metric)

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        """Continue a pending measurement; an unknown handle is an error result."""
        entry = self._pending.pop(pending, None)
        if entry is None:
            return ProviderResult(error=f"static: unknown pending measurement {pending!r}")
        key, polls_left = entry
        if polls_left > 0:
            self._count(key)
            self._pending[pending] = (key, polls_left - 1)
            return ProviderResult(pending=pending)
        return self._take(key, metric)

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Forget a pending measurement; idempotent."""
        self._pending.pop(pending, None)

    def _count(self, key: tuple[str, str]) -> int:
        number = self._calls.get(key, 0)
        self._calls[key] = number + 1
        return number

    def _step(self, metric: Metric, number: int) -> Step | Fail:
        script: Script | str = self._script if self._script is not None else script_from_metric(metric)
        if isinstance(script, str):
            return Fail(script)
        if callable(script):
            try:
                return script(number)
            except Exception as error:  # a script is user code in a test; its bug becomes the measurement's  # noqa: BLE001 - fail closed: any failure becomes an error result
                return Fail(f"static: script raised {type(error).__name__}: {error}")
        if not script:
            return Fail("static: the script is empty")
        return script[min(number, len(script) - 1)]

    def _take(self, key: tuple[str, str], metric: Metric) -> ProviderResult:
        step = self._step(metric, self._count(key))
        if isinstance(step, Fail):
            return ProviderResult(error=step.message)
        if isinstance(step, Wait):
            handle = f"static-{next(self._handles)}"
            self._pending[handle] = (key, max(step.polls - 1, 0))
            return ProviderResult(pending=handle)
        if isinstance(step, ProviderResult):
            return step
        return ProviderResult(value=step)
