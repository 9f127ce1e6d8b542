"""Rollouts for humans in a terminal: a tree like ``kubectl argo rollouts get rollout``, a list, JSON/YAML dumps.

Everything renders a `headway.dashboard.model.RolloutView`, whichever mode it came from (the embedded daemon's
JSON or a Kubernetes source), onto a rich `Console` the caller owns: ``get --watch`` wraps `rollout_renderable` in
``rich.live.Live``; tests pass a recording console of fixed width without colour and compare with snapshots.
The layout follows Argo's plugin on purpose (the header block, then NAME / KIND / STATUS / AGE-less INFO rows), so
people who know it read ours without learning anything; the judge's evidence is added under each analysis run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from headway.dashboard.model import AnalysisRunView, MeasurementView, PodView, RevisionView, RolloutView, with_roles


class Output(StrEnum):
    """``-o`` values: the human views, or a machine-readable dump of the same view."""

    TREE = "tree"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


ICONS = {
    "Healthy": "✔",
    "Successful": "✔",
    "Progressing": "◌",
    "Running": "◌",
    "Pending": "◌",
    "Paused": "॥",
    "Inconclusive": "⚠",
    "Degraded": "✖",
    "Failed": "✖",
    "Error": "⚠",
    "ScaledDown": "•",
}
STYLES = {"✔": "green", "◌": "cyan", "॥": "yellow", "⚠": "yellow", "✖": "red"}


def status_text(phase: str | None) -> Text:
    """``✔ Healthy``, ``॥ Paused``…: the icon carries the meaning when colour is off."""
    label = phase or "Unknown"
    icon = ICONS.get(label, "?")
    return Text(f"{icon} {label}", style=STYLES.get(icon, ""))


def _step(view: RolloutView) -> str:
    if not view.steps:
        return "-"
    done = view.phase == "Healthy" and view.current_hash == view.stable_hash
    shown = view.steps if done or view.step is None else min(view.step + 1, view.steps)
    return f"{shown}/{view.steps}"


def _header(view: RolloutView) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", min_width=16)
    grid.add_column()
    grid.add_row("Name:", view.name)
    grid.add_row("Namespace:", view.namespace)
    grid.add_row("Status:", status_text(view.phase))
    if view.message:
        grid.add_row("Message:", view.message)
    blue_green = view.strategy.lower().replace("-", "") == "bluegreen"
    grid.add_row("Strategy:", "BlueGreen" if blue_green else "Canary")
    if not blue_green:
        grid.add_row("  Step:", _step(view))
        grid.add_row("  SetWeight:", str(view.canary_weight))
        grid.add_row("  ActualWeight:", "unknown" if view.actual_weight is None else str(view.actual_weight))
    images = _images(view)
    for index, line in enumerate(images or ["-"]):
        grid.add_row("Images:" if index == 0 else "", line)
    grid.add_row("Replicas:", "")
    grid.add_row("  Desired:", str(view.replicas))
    grid.add_row("  Ready:", f"{view.ready_replicas} (all revisions)")
    return grid


def _images(view: RolloutView) -> list[str]:
    """Each live image once, tagged with the roles of the revisions running it (stable, canary, active…)."""
    tags: dict[str, list[str]] = {}
    for revision in view.revisions:
        if revision.image and (revision.role or revision.replicas):
            roles = tags.setdefault(revision.image, [])
            if revision.role and revision.role not in roles:
                roles.append(revision.role)
    if not tags:
        for image, role in ((view.stable_image, "stable"), (view.current_image, "canary")):
            if image:
                tags.setdefault(image, []).append(role)
    return [f"{image} ({', '.join(roles)})" if roles else image for image, roles in tags.items()]


def _runs_of(view: RolloutView, revision: RevisionView) -> list[AnalysisRunView]:
    runs = [*view.analysis_runs, *view.experiments]
    return [
        run for run in runs if (run.revision or "") == revision.hash or (not run.revision and revision.hash in run.name)
    ]


def _run_label(run: AnalysisRunView, kind: str) -> Text:
    label = Text(f"\N{GREEK SMALL LETTER ALPHA} {run.name}  {kind}  ")
    label.append_text(status_text(run.phase))
    details = []
    if run.measurements:
        failed = sum(1 for m in run.measurements if m.phase in ("Failed", "Error"))
        details.append(f"✔ {len(run.measurements) - failed}" + (f" ✖ {failed}" if failed else ""))
    if run.message:
        details.append(run.message)
    if details:
        label.append("  " + "; ".join(details))
    return label


def _judge_label(run: AnalysisRunView) -> Text | None:
    judge = run.judge
    if judge is None:
        return None
    lower = "0" if judge.lower is None else f"{judge.lower:.3g}"
    upper = "∞" if judge.upper is None else f"{judge.upper:.3g}"
    text = (
        f"judge: ratio {judge.ratio:.3g} [{lower}, {upper}], tolerated {judge.tolerated_ratio:g}, p={judge.p_value:.2g}"
    )
    if (judge.canary_requests or judge.stable_requests) and not judge.verdict:
        text += f", requests canary {judge.canary_requests} / stable {judge.stable_requests}"
    if judge.verdict:
        text += f"\n{judge.verdict}"
    return Text(text, style="dim")


MEASUREMENTS_SHOWN = 5
"""The newest measurements printed per metric (the dashboard charts them all)."""


def _metric_lines(run: AnalysisRunView) -> list[Text]:
    """One line per metric: its newest measurements, each with its verdict icon, and the last error's message."""
    by_metric: dict[str, list[MeasurementView]] = {}
    for measurement in run.measurements:
        by_metric.setdefault(measurement.metric, []).append(measurement)
    lines = []
    for metric, measured in by_metric.items():
        line = Text(f"{metric}:", style="dim")
        if len(measured) > MEASUREMENTS_SHOWN:
            line.append(" …", style="dim")
        for measurement in measured[-MEASUREMENTS_SHOWN:]:
            value = "-" if measurement.value is None else f"{measurement.value:.4g}"
            icon = ICONS.get(measurement.phase, "?")
            line.append(f" {value} ")
            line.append(icon, style=STYLES.get(icon, ""))
        last = measured[-1]
        if last.phase in ("Error", "Failed") and last.message:
            line.append(f"  {last.message}", style="dim")
        lines.append(line)
    return lines


def _add_run(parent: Tree, run: AnalysisRunView, kind: str) -> None:
    node = parent.add(_run_label(run, kind))
    for line in _metric_lines(run):
        node.add(line)
    judge = _judge_label(run)
    if judge is not None:
        node.add(judge)


def _pod_label(pod: PodView) -> Text:
    """``□ web-6f5c-x2k  Pod  ✔ Running  ready:1/1``, with restarts when there were any."""
    ready, _, total = pod.ready.partition("/")
    if pod.phase == "Running":
        icon = "✔" if ready == total and total not in ("", "0") else "◌"
    else:
        icon = {"Pending": "◌", "Failed": "✖", "Terminating": "•", "Succeeded": "•"}.get(pod.phase, "?")
    label = Text(f"□ {pod.name}  Pod  ")
    label.append(f"{icon} {pod.phase}", style=STYLES.get(icon, ""))
    label.append(f"  ready:{pod.ready}" + (f"  restarts:{pod.restarts}" if pod.restarts else ""))
    return label


def _tree(view: RolloutView) -> Tree:
    kind = view.revision_kind
    tree = Tree(Text.assemble(f"⟳ {view.name}  Rollout  ", status_text(view.phase)), guide_style="dim")
    attached: set[str] = set()
    for revision in sorted(view.revisions, key=lambda r: r.number, reverse=True):
        branch = tree.add(f"# revision:{revision.number}")
        label = Text(f"⧉ {view.name}-{revision.hash}  {kind}  ")
        healthy = revision.replicas == 0 or revision.ready >= revision.replicas
        label.append_text(
            status_text("Healthy" if healthy and revision.replicas else "ScaledDown" if healthy else "Progressing")
        )
        info = f"  {revision.ready}/{revision.replicas} ready"
        if revision.role:
            info = f"  {revision.role}" + info
        label.append(info)
        if revision.image:
            label.append(f"  {revision.image}")
        replica_set = branch.add(label)
        for pod in revision.pods:
            replica_set.add(_pod_label(pod))
        for run in _runs_of(view, revision):
            attached.add(run.name)
            _add_run(branch, run, "Experiment" if run in view.experiments else "AnalysisRun")
    for run in [*view.analysis_runs, *view.experiments]:
        if run.name not in attached:
            _add_run(tree, run, "Experiment" if run in view.experiments else "AnalysisRun")
    return tree


def rollout_renderable(view: RolloutView) -> RenderableType:
    """The `render_rollout` output as one renderable (for ``rich.live.Live`` in ``get --watch``)."""
    view = with_roles(view)
    return Group(_header(view), Text(""), _tree(view))


def render_rollout(view: RolloutView, *, console: Console) -> None:
    console.print(rollout_renderable(view))


def list_renderable(views: Sequence[RolloutView], *, all_namespaces: bool = True) -> RenderableType:
    if not views:
        return Text("No rollouts found.")
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = [
        "NAME",
        "NAMESPACE",
        "STRATEGY",
        "STATUS",
        "STEP",
        "WEIGHT",
        "ACTUAL",
        "DESIRED",
        "READY",
        "IMAGE",
    ]
    for column in columns if all_namespaces else [c for c in columns if c != "NAMESPACE"]:
        table.add_column(column, no_wrap=column != "IMAGE", overflow="fold")
    for view in sorted(views, key=lambda v: (v.namespace, v.name)):
        row: list[RenderableType] = [
            view.name,
            view.namespace,
            "BlueGreen" if view.strategy.lower().replace("-", "") == "bluegreen" else "Canary",
            status_text(view.phase),
            _step(view),
            str(view.canary_weight),
            "-" if view.actual_weight is None else str(view.actual_weight),
            str(view.replicas),
            str(view.ready_replicas),
            view.current_image or "-",
        ]
        if not all_namespaces:
            del row[1]
        table.add_row(*row)
    return table


def render_list(views: Sequence[RolloutView], *, console: Console, all_namespaces: bool = True) -> None:
    console.print(list_renderable(views, all_namespaces=all_namespaces))


def dump(data: RolloutView | Sequence[RolloutView], output: Output | str) -> str:
    """``-o json|yaml``: the same view the dashboard API serves (camelCase keys), as text."""
    body: Any = with_roles(data).wire() if isinstance(data, RolloutView) else [with_roles(v).wire() for v in data]
    if Output(output) == Output.JSON:
        return json.dumps(body, indent=2) + "\n"
    if Output(output) == Output.YAML:
        return str(yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    raise ValueError(f"dump supports -o json or yaml, not {output!r}")


def plain_console(width: int = 100) -> Console:
    """A recording console without colour or terminal tricks: for tests, pipes and snapshots."""
    return Console(width=width, record=True, color_system=None, force_terminal=False, legacy_windows=False)
