"""The `headway` command (also installed as the kubectl plugin `kubectl-headway`).

Only wiring lives here: each subcommand is a click command in its own module, registered below with
``main.add_command``, so adding one never touches another's code.
"""

from __future__ import annotations

import click

from headway import __version__
from headway.cli import embedded
from headway.cli.completion import completion
from headway.cli.controller import controller
from headway.cli.dashboard import dashboard
from headway.cli.lint import lint
from headway.cli.simulate import simulate
from headway.cli.version import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="headway")
def main() -> None:
    """Progressive delivery (canary, blue/green) for Kubernetes and for one machine."""


# Subcommands: one line each, in the order `headway --help` lists them (click sorts by name).
main.add_command(lint)
main.add_command(simulate)
main.add_command(dashboard)
main.add_command(completion)
main.add_command(version)
main.add_command(controller)
for command in embedded.COMMANDS:
    main.add_command(command)


if __name__ == "__main__":
    main()
