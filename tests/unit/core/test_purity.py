"""The core decides from its inputs only: no clock reads, no sleeps, no randomness, no I/O.

import-linter already forbids importing ``time``, ``random``, ``os`` and friends into the core; this test closes
the gaps an import contract cannot see: ``datetime.now()``/``utcnow()``/``today()`` through the allowed
``datetime`` import, and ``open()``/``print()``/``input()`` builtins.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "src" / "headway" / "core"
SPEC = CORE.parent / "spec"
CLOCK_METHODS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
IO_BUILTINS = {"open", "print", "input", "eval", "exec", "compile", "__import__"}
SOURCES = sorted([*CORE.glob("*.py"), *SPEC.glob("*.py")])


def offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_METHODS:
                found.append(f"line {node.lineno}: .{func.attr}() reads the clock")
            if isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                found.append(f"line {node.lineno}: {func.id}() is I/O or dynamic code")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_core_and_spec_modules_read_no_clock_and_do_no_io(path: Path) -> None:
    assert offences(path.read_text()) == []


def test_the_checker_catches_what_it_looks_for() -> None:
    bad = "import datetime\nx = datetime.datetime.now()\nprint(x)\ny = eval('1')\n"
    assert len(offences(bad)) == 3


def test_there_is_something_to_check() -> None:
    assert len(SOURCES) > 10
