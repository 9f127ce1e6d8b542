"""`headway simulate FILE`: watch a rollout of FILE play out in virtual time, before it meets real users.

The manifest's template is deployed as the stable revision, then its image changes and the real engine rolls it
out against fake adapters under a scenario (``good``, ``bad``, ``slow``, ``flaky``, ``crashloop``; see
`headway.sim.scenarios`). The timeline shows what a user would have seen change: steps, canary weight, pods,
analysis verdicts and the engine's events; the summary says how it ended and what users paid for it in failed
requests. Time starts at a fixed instant, so the same file and scenario always print the same story.

A file with errors prints its problems exactly like `headway lint` and exits 1; it is never a traceback.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from headway.cli.lint import lint_paths
from headway.core.analysis import JUDGE_DEFAULT_INTERVAL
from headway.sim.runner import (
    FROM_SCENARIO,
    Outcome,
    SimResult,
    TimelineEntry,
    load_manifests,
    measurable,
    run_scenario,
)
from headway.sim.scenarios import SCENARIOS
from headway.spec.analysis import AnalysisTemplate, has_placeholder
from headway.spec.base import parse_duration
from headway.spec.load import SpecError
from headway.spec.rollout import Rollout

_OUTCOME_STYLE = {
    Outcome.PROMOTED: "bold green",
    Outcome.ABORTED: "bold red",
    Outcome.DEGRADED: "bold red",
    Outcome.PAUSED: "bold yellow",
    Outcome.TIMED_OUT: "bold yellow",
}
_MIN_WIDTH = 140
"""Rich wraps a table to 80 columns when not writing to a terminal; a timeline needs more to stay readable."""
MAX_VIRTUAL_SECONDS = 7 * 24 * 3600
"""Longest virtual time a simulation may cover (and latest auto-promotion): a week of passes stays quick."""
MAX_PODS = 1000
"""Most pods one revision may have in a simulation: every pod is modelled, so the cost grows with the count,
and a canary's story does not change beyond a few hundred."""
MAX_MEASUREMENTS = 2000
"""Most measurements one simulated metric may take within --time-limit: each is a pass of the engine (a few
milliseconds), so a 1 ms interval over three hours of virtual time would run for hours."""


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A finite number of seconds within `MAX_VIRTUAL_SECONDS` (click's FloatRange lets nan and inf through)."""
    if value is not None and (not math.isfinite(value) or value > MAX_VIRTUAL_SECONDS):
        raise click.BadParameter(f"{value:g} is not a number of seconds in 0..{MAX_VIRTUAL_SECONDS}")
    return value


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--scenario",
    type=click.Choice(list(SCENARIOS)),
    default="good",
    show_default=True,
    help="How the new revision behaves.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: {timeline, summary}.")
@click.option(
    "--auto-promote",
    type=click.FloatRange(min=0),
    default=None,
    callback=_seconds,
    metavar="SECONDS",
    help="Promote a rollout waiting for promotion after SECONDS (default: as the scenario says).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=3 * 3600,
    show_default=True,
    callback=_seconds,
    metavar="SECONDS",
    help="Stop after this much virtual time.",
)
@click.option("--image", default=None, help="The new image (default: the manifest's, with its version bumped).")
def simulate(
    file: str, *, scenario: str, as_json: bool, auto_promote: float | None, time_limit: float, image: str | None
) -> None:
    """Simulate a rollout of FILE's Rollout to a new image, in virtual time."""
    problems, _ = lint_paths([file])
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        _fail([problem.render() for problem in errors])
    try:
        rollout, templates = load_manifests(file)
        too_many = [
            f"{file}: {path}: {count} is more pods than simulate models (at most {MAX_PODS})"
            for path, count in _pod_counts(rollout)
            if count > MAX_PODS
        ]
        too_many += [f"{file}: {where}" for where in _too_frequent(templates, time_limit)]
        if too_many:
            _fail(too_many)
        result = run_scenario(
            file,
            scenario,
            auto_promote_after=FROM_SCENARIO if auto_promote is None else auto_promote,
            time_limit=time_limit,
            image=image,
        )
    except SpecError as error:
        _fail([problem.render() for problem in error.problems])
    except OSError as error:
        _fail([f"{file}: {(error.strerror or str(error)).lower()}"])
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    console = Console(width=max(Console().width, _MIN_WIDTH), highlight=False)
    _print(console, result)


def _pod_counts(rollout: Rollout) -> Iterator[tuple[str, int]]:
    """(field, pods) of every count in the Rollout that the simulator turns into modelled pods."""
    spec = rollout.spec
    yield "spec.replicas", spec.replicas_or_default()
    canary = spec.strategy.canary
    for i, step in enumerate(canary.steps if canary is not None else []):
        if step.set_canary_scale is not None and step.set_canary_scale.replicas is not None:
            yield f"spec.strategy.canary.steps[{i}].setCanaryScale.replicas", step.set_canary_scale.replicas
        for j, template in enumerate(step.experiment.templates if step.experiment is not None else []):
            if template.replicas is not None:
                yield f"spec.strategy.canary.steps[{i}].experiment.templates[{j}].replicas", template.replicas
    blue_green = spec.strategy.blue_green
    if blue_green is not None and blue_green.preview_replica_count is not None:
        yield "spec.strategy.blueGreen.previewReplicaCount", blue_green.preview_replica_count


def _too_frequent(templates: dict[str, AnalysisTemplate], time_limit: float) -> Iterator[str]:
    """Metrics the simulator would measure (judges over its own traffic) more than `MAX_MEASUREMENTS` times."""
    if not measurable(templates):
        return  # other providers' verdicts are scripted by the scenario, whatever their interval
    for name, template in templates.items():
        for i, metric in enumerate(template.spec.metrics):
            interval = metric.interval
            if interval is not None and has_placeholder(interval):
                continue
            seconds = parse_duration(interval) if interval is not None else JUDGE_DEFAULT_INTERVAL
            count = metric.count if isinstance(metric.count, int) and metric.count > 0 else None
            measurements = time_limit / seconds if seconds > 0 else math.inf
            if min(measurements, count or math.inf) > MAX_MEASUREMENTS:
                yield (
                    f"AnalysisTemplate/{name}: spec.metrics[{i}].interval: {interval} would take more than "
                    f"{MAX_MEASUREMENTS} measurements in --time-limit {time_limit:g} (use a longer interval or a "
                    "shorter --time-limit)"
                )


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)


def _print(console: Console, result: SimResult) -> None:
    summary = result.summary
    console.print(
        f"[bold]{result.rollout.name}[/]: {_image(result, summary.stable_hash)} → "
        f"{_image(result, summary.canary_hash)}, scenario [bold]{summary.scenario}[/] ({result.scenario.story})"
    )
    table = Table(show_lines=False, header_style="bold", expand=False)
    for column in ("time", "step", "weight"):
        table.add_column(column, justify="right")
    for column in ("pods ready/desired", "analysis", "phase", "what happened"):
        table.add_column(column)
    steps = summary.steps
    for entry in result.timeline:
        table.add_row(
            _clock(entry.at),
            f"{entry.step}/{steps}" if entry.step is not None and steps else "",
            f"{entry.weight}%",
            _pods(entry),
            _analyses(entry, result),
            entry.phase,
            _happened(entry),
        )
    console.print(table)
    outcome = Text(summary.outcome.value, style=_OUTCOME_STYLE[summary.outcome])
    console.print(Text.assemble("outcome: ", outcome, f" ({summary.reason})"))
    progress = f"steps {summary.steps_completed}/{steps}, " if steps else ""
    console.print(
        f"virtual time {_clock(summary.duration_seconds)}, {summary.passes} passes, "
        f"{progress}promotions by the user: {summary.promotions}"
    )
    console.print(
        f"requests: {summary.total_requests} total, {summary.canary_requests} to the canary, "
        f"{summary.failed_requests} failed as users saw them"
    )


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return (
        f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        if whole >= 3600
        else f"{whole // 60}:{whole % 60:02d}"
    )


def _image(result: SimResult, pod_hash: str) -> str:
    template = result.platform.template_of(result.rollout, pod_hash) or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image", pod_hash))


def _pods(entry: TimelineEntry) -> str:
    return ", ".join(f"{row.role} {row.ready}/{row.replicas}" for row in entry.revisions if row.replicas or row.ready)


def _analyses(entry: TimelineEntry, result: SimResult) -> str:
    prefix = re.compile(rf"^{re.escape(result.rollout.name)}-{re.escape(result.summary.canary_hash)}-\d+-")
    return "\n".join(f"{prefix.sub('', name)}: {phase}" for name, phase in entry.analyses)


def _happened(entry: TimelineEntry) -> Text:
    if entry.events:
        return Text("\n".join(entry.events))
    return Text(entry.message, style="dim")
