"""The Typer application that every command module adds its commands to."""

from __future__ import annotations

import typer

from mambapoc import __version__

app = typer.Typer(
    name="mambapoc",
    help=(
        "Can a Mamba model replace a Transformer on your own long logs and documents?\n\n"
        "Ingest your logs, build in-context tasks from them, run a Mamba and a Transformer side by side "
        "at lengths like 1k, 8k and 64k tokens, and get a speed, memory, accuracy and cost report.\n\n"
        "Start with `mambapoc demo` (bundled sample data and models, offline, CPU), then "
        "`mambapoc run recipes/demo.yaml` with your own paths."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mambapoc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Root options."""
