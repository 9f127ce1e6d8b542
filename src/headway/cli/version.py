"""`headway version [-o json]`: what is installed, for bug reports (the CLI, Python, and the libraries that matter)."""

from __future__ import annotations

import json
import platform
from importlib import metadata

import click

from headway import __version__

LIBRARIES = ("pydantic", "aiohttp", "click", "rich", "cel-expr-python", "kopf", "lightkube")


def versions() -> dict[str, str]:
    found = {"headway": __version__, "python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def version(output: str) -> None:
    """Print the versions of headway, Python and its main libraries."""
    found = versions()
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    width = max(len(name) for name in found)
    for name, value in found.items():
        click.echo(f"{name + ':':<{width + 2}}{value}")
