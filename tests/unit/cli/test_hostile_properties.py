"""Property: whatever bytes arrive, lint, simulate and the daemon's apply answer 0 or 1, never a traceback, within
2 s of CPU and 256 MB (issue #11).

Inputs are generated three ways: valid example manifests with one field replaced by an arbitrary value (the
shapes that reach the models), the same texts mutated as text (YAML tokens, control characters, anchors,
aliases and merge keys spliced in: the shapes that reach the parser), and raw bytes. Most examples run in
process (click's CliRunner, `Runner.apply_text` as ``/api/v1/apply`` calls it); a few run as real processes
under an address-space limit, measured with ``wait4``. Time is CPU time, so a busy shared machine cannot fail
the test; memory in process is the growth of the process's peak RSS.
"""

from __future__ import annotations

import copy
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headway.cli.main import main
from headway.runtimes.embedded.runner import CommandError
from headway.spec.load import SpecError, load_yaml
from tests.unit.cli.test_hostile_inputs import Measured, measured
from tests.unit.runtimes.embedded.world import World

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SEEDS = [path.read_text() for path in EXAMPLES]
DOCUMENTS = [document for text in SEEDS for document in load_yaml(text) if isinstance(document, dict)]
CPU_SECONDS = 2.0
MEGABYTES = 256

SPLICES = [
    "&a ", "*a", "<<: *a\n", "? ", "- ", "[", "]", "{", "}", ",", ": ", "---\n", "...\n", "!!binary ", "!!set ",
    "!!python/name:os.system ", "%YAML 1.1\n", "\t", "\x00", "\x1b", "\ud800", "\ufeff", "'", '"', "\\u0000",
    "9" * 50, "1e309", ".nan", "-.inf", "2024-01-01", "0x7fffffffffffffff", "~", "|\n", ">-\n", "#",
]  # fmt: skip
"""Fragments that exercise the parser: structure, anchors, tags, escapes, characters YAML refuses."""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["20", "25%", "100000000h", "1h30m", "{{args.x}}", "result[0] > 1", "Rollout", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a decoded document."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """An example manifest with the value at one path replaced by an arbitrary value (or the key removed)."""
    document = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    path = draw(st.sampled_from(paths(document)[1:]))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(values)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """An example manifest text with fragments spliced in and slices dropped or repeated."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["splice", "drop", "repeat"]))
        if action == "splice":
            text = text[:at] + draw(st.sampled_from(SPLICES)) + text[at:]
        else:
            end = min(len(text), at + draw(st.integers(1, 200)))
            text = text[:at] + (text[at:end] * draw(st.integers(2, 50)) if action == "repeat" else "") + text[end:]
    return text


inputs = st.one_of(
    mutated_documents().map(lambda text: text.encode("utf-8", "surrogatepass")),
    mutated_texts().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=2000),
)
examples = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bounded_cli(*args: str, stdin: bytes | None = None) -> str:
    """Run the CLI in process; assert exit 0 or 1, no exception, and the CPU and memory bounds."""
    rss, start = peak_rss_mb(), time.process_time()
    result = CliRunner().invoke(main, list(args), input=stdin)
    elapsed, grown = time.process_time() - start, peak_rss_mb() - rss
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), output
    assert "Traceback" not in output
    assert elapsed < CPU_SECONDS, f"{elapsed:.2f} s of CPU for headway {' '.join(args)}"
    assert grown < MEGABYTES, f"peak RSS grew by {grown:.0f} MB"
    return output


def test_the_seeds_are_valid_manifests() -> None:
    """The mutations start from manifests lint accepts, so every problem found comes from the mutation."""
    assert len(DOCUMENTS) >= 5
    for path in EXAMPLES:
        result = CliRunner().invoke(main, ["lint", str(path)])
        assert result.exit_code == 0, (path.name, result.stdout)


@examples
@given(data=inputs)
def test_lint_answers_anything_in_bounded_time_and_memory(data: bytes) -> None:
    bounded_cli("lint", "-", stdin=data)


@examples
@given(data=inputs)
def test_the_daemons_apply_answers_anything_with_a_spec_error_or_stores_it(data: bytes) -> None:
    """`/api/v1/apply` hands the body (decoded as aiohttp does, replacing bad bytes) to `Runner.apply_text`."""
    text = data.decode("utf-8", errors="replace")
    world = World()
    rss, start = peak_rss_mb(), time.process_time()
    try:
        applied = world.runner.apply_text(text, "request.yaml")
    except SpecError as error:
        assert error.problems and all(problem.message for problem in error.problems)
    except CommandError as error:
        assert "no Headway manifest found" in str(error)
    else:
        assert applied and all("/" in name for name in applied)
    assert time.process_time() - start < CPU_SECONDS
    assert peak_rss_mb() - rss < MEGABYTES


@settings(examples, max_examples=25)
@given(text=st.one_of(mutated_documents(), mutated_texts()))
def test_simulate_answers_mutated_manifests_in_bounded_time(text: str) -> None:
    """Simulation runs the engine over virtual time, so an accepted manifest costs more: fewer examples."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rollout.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        bounded_cli("simulate", str(path), "--time-limit", "3600", "--json")


@pytest.mark.parametrize("seed", range(4))
def test_real_processes_stay_within_the_bounds_on_generated_input(seed: int, tmp_path: Path) -> None:
    """A few generated inputs through real processes, where peak RSS is the child's own."""
    (tmp_path / "input.yaml").write_bytes(_generated(seed))
    for args in (("lint", "input.yaml"), ("simulate", "input.yaml", "--time-limit", "3600")):
        result: Measured = measured(*args, cwd=tmp_path)
        assert result.code in (0, 1), result
        assert "Traceback" not in result.stderr + result.stdout
        assert result.cpu_seconds < CPU_SECONDS + 1.5, result  # plus the interpreter's start-up
        assert result.peak_mb < MEGABYTES, result


def _generated(seed: int) -> bytes:
    """A deterministic hostile input per seed: a bomb, a deep text, a mutated manifest, a document flood."""
    bombs = [
        "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in
                                                 zip("abcdefgh", "bcdefghi", strict=True)),
        "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
        SEEDS[seed % len(SEEDS)].replace("apiVersion", "<<: *nothing\napiVersion", 1),
        "--- {}\n" * 100_000,
    ]  # fmt: skip
    return bombs[seed].encode()
