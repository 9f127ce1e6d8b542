"""The `headway` command (also installed as the kubectl plugin `kubectl-headway`).

Only wiring lives here: each subcommand is a click command in its own module, named below in `COMMANDS`, so
adding one never touches another's code. A subcommand's module is imported only when that subcommand runs (or
``--help`` lists them all): ``headway status`` in a CI loop or a <Tab> completion must not pay for the
Kubernetes client, aiohttp and the simulator it does not use.
"""

from __future__ import annotations

import importlib

import click

from headway import __version__

EMBEDDED = "headway.cli.embedded"
EMBEDDED_NAMES = [
    "up",
    "down",
    "apply",
    "set",
    "promote",
    "abort",
    "retry",
    "pause",
    "resume",
    "restart",
    "undo",
    "get",
    "list",
    "status",
]
COMMANDS: dict[str, tuple[str, str]] = {
    "lint": ("headway.cli.lint", "lint"),
    "simulate": ("headway.cli.simulate", "simulate"),
    "dashboard": ("headway.cli.dashboard", "dashboard"),
    "completion": ("headway.cli.completion", "completion"),
    "version": ("headway.cli.version", "version"),
    "controller": ("headway.cli.controller", "controller"),
    **dict.fromkeys(EMBEDDED_NAMES, (EMBEDDED, "COMMANDS")),
}
"""Subcommand name → (module, attribute): a command, or a sequence of commands to pick it from by name."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        found: click.Command | list[click.Command] = getattr(importlib.import_module(module), attribute)
        if isinstance(found, click.Command):
            return found
        return next(command for command in found if command.name == cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="headway")
def main() -> None:
    """Progressive delivery (canary, blue/green) for Kubernetes and for one machine."""


if __name__ == "__main__":
    main()
