"""`headway lint FILE...`: check manifests the way the controller would, before they reach a cluster.

Files, directories (every ``*.yaml``/``*.yml`` below them) and ``-`` (standard input) are read here, since the
spec layer does no I/O. All documents of one run form a single lint set, so a Rollout in one file is checked
against the AnalysisTemplates of another. Every problem is printed, one per line; the exit status is 0 when
there are no errors (warnings alone pass) and 1 otherwise. A missing or unreadable file is a problem like any
other, never a traceback.

Each mode runs only what it can (`headway.engine.admission`): ``--mode embedded`` or ``--mode kubernetes``
reports what that mode would refuse as errors; the default (``all``) checks both and reports what one of them
lacks as a warning naming the mode, so a manifest written for either still passes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import click

from headway.core.analysis import is_judge, judge_config
from headway.core.conditions import lint_conditions
from headway.engine.admission import Mode, admit_all
from headway.manifest_files import STDIN, ManifestFileError, load_manifest_text, read_text
from headway.spec.load import Document, Problem, Severity
from headway.spec.validate import validate

SUFFIXES = (".yaml", ".yml")
ALL_MODES = "all"


def lint_paths(paths: Iterable[str], mode: str = ALL_MODES) -> tuple[list[Problem], int]:
    """Every problem of the manifests under `paths` (for ``mode``, or both modes), and how many objects were
    read."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for name, text, problem in _read_all(paths):
        if problem is not None:
            problems.append(problem)
            continue
        loaded = load_manifest_text(text, name)
        documents.extend(loaded)
        problems.extend(found for document in loaded for found in document.problems)
    problems.extend(validate(documents))
    problems.extend(lint_conditions(documents))
    problems.extend(_judge_problems(documents))
    problems.extend(_mode_problems(documents, mode))
    objects = sum(1 for document in documents if document.kind and not document.skipped)
    return _ordered(problems), objects


def _judge_problems(documents: Sequence[Document]) -> list[Problem]:
    """Judge settings the judge cannot use (an unknown key, a bad value): a run of them would be Error at start.

    Settings holding ``{{args.NAME}}`` placeholders are checked once a run fills them in, not here."""
    problems: list[Problem] = []
    for document in documents:
        metrics = getattr(getattr(document.model, "spec", None), "metrics", None)
        for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
            if not is_judge(metric) or "{{" in str(metric.provider.plugin):
                continue
            config = judge_config(metric)
            if isinstance(config, str):
                path = f"spec.metrics[{index}]"
                line = document.lines.get(f"{path}.provider", document.lines.get(path))
                problems.append(
                    Problem(
                        document.file, document.kind, document.name, path, config, document=document.index, line=line
                    )
                )
    return problems


def _mode_problems(documents: Sequence[Document], mode: str) -> list[Problem]:
    """What ``mode`` cannot do; for ``all``, what either mode cannot do, as warnings (the messages name it)."""
    if mode != ALL_MODES:
        return admit_all(documents, Mode(mode))
    found = [problem for each in Mode for problem in admit_all(documents, each)]
    return [replace(problem, severity=Severity.WARNING) for problem in found]


def _read_all(paths: Iterable[str]) -> Iterable[tuple[str, str, Problem | None]]:
    """(display name, text, problem) per file; a file named twice (directly and via its directory) is read
    once, or its objects would be reported as duplicates of themselves."""
    seen: set[str] = set()
    for raw in paths:
        if raw == STDIN:
            yield _read(STDIN)
            continue
        path = Path(raw)
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not files:
                yield raw, "", _file_problem(raw, "directory has no .yaml or .yml files")
        for file in files:
            key = _identity(file)
            if key not in seen:
                seen.add(key)
                yield _read(str(file))


def _identity(path: Path) -> str:
    """The real path of a file, to read it once; a path that cannot be resolved (a symlink loop) is its own
    identity, and the read that follows reports why it cannot be read."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path.absolute())


def _read(path: str) -> tuple[str, str, Problem | None]:
    """A regular file or standard input, read with the size cap (see `headway.manifest_files`)."""
    name = "<stdin>" if path == STDIN else path
    try:
        return name, read_text(path), None
    except ManifestFileError as exc:
        return name, "", _file_problem(name, str(exc).removeprefix(f"{name}: "))


def _file_problem(name: str, message: str) -> Problem:
    return Problem(name, "", "", "", message)


def _ordered(problems: Sequence[Problem]) -> list[Problem]:
    """By file, then line: the order a user fixes them in (stable within a line)."""
    files: dict[str, int] = {}
    for problem in problems:
        files.setdefault(problem.file, len(files))
    return sorted(problems, key=lambda p: (files[p.file], p.line or 0))


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print problems as one JSON document.")
@click.option(
    "--mode",
    type=click.Choice([ALL_MODES, *(str(mode) for mode in Mode)]),
    default=ALL_MODES,
    show_default=True,
    help="Where the manifests will run: what that mode cannot do is an error (all: a warning naming the mode).",
)
def lint(paths: tuple[str, ...], as_json: bool, mode: str) -> None:
    """Check Rollout, AnalysisTemplate, AnalysisRun and Experiment manifests.

    FILE may be a file, a directory (its *.yaml and *.yml files, recursively) or - for standard input.
    """
    problems, objects = lint_paths(paths, mode)
    errors = sum(1 for problem in problems if problem.severity is Severity.ERROR)
    warnings = len(problems) - errors
    if as_json:
        report = {
            "errors": errors,
            "warnings": warnings,
            "objects": objects,
            "problems": [problem.as_dict() for problem in problems],
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for problem in problems:
            click.echo(problem.render())
        summary = f"{objects} object{'s' if objects != 1 else ''}: "
        summary += f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
        click.echo(summary, err=True)
    sys.exit(1 if errors else 0)
