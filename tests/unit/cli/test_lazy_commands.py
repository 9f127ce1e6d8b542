"""The command table loads each subcommand on use, and an everyday command does not import what it does not use."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from headway.cli import embedded
from headway.cli.main import COMMANDS, EMBEDDED, main


def test_the_table_names_every_embedded_command_and_each_name_resolves() -> None:
    assert {command.name for command in embedded.COMMANDS} == {n for n, (m, _) in COMMANDS.items() if m == EMBEDDED}
    context = click.Context(main)
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        assert command is not None and command.name == name
    assert main.get_command(context, "nope") is None


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["version"], ["aiohttp", "lightkube", "pydantic", "headway.cli.embedded"]),
        (["get", "rollout", "web", "--state-dir", "/nonexistent-headway"], ["lightkube", "aiohttp", "kopf"]),
    ],
)
def test_a_command_imports_only_what_it_uses(argv: list[str], absent: list[str]) -> None:
    script = (
        "import sys\n"
        "from headway.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('LOADED:', sorted(m for m in {absent!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "LOADED: []", done.stdout
