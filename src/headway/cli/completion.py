"""`headway completion bash|zsh|fish`: print the shell completion script (click's own, for this command tree).

Install with, for example, ``headway completion bash > ~/.local/share/bash-completion/completions/headway`` or
``eval "$(headway completion zsh)"`` in ``~/.zshrc``. The script calls back into ``headway`` at each <Tab>, so
it completes every subcommand and option, including ones added later, without being regenerated.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.option("--prog-name", default="headway", show_default=True, help="Command name (kubectl-headway…).")
@click.pass_context
def completion(ctx: click.Context, shell: str, prog_name: str) -> None:
    """Print the completion script for SHELL."""
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion support for {shell}")
    variable = "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())
    click.echo(cls(root, {}, prog_name, variable).source())
