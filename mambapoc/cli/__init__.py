"""The `mambapoc` command line. Each stage lives in its own module and registers its commands here."""

from __future__ import annotations

import importlib
import sys

import typer

from mambapoc import __version__
from mambapoc.errors import UserError

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


def _register() -> None:
    # Imported for their side effect of adding commands to `app`; kept light at import time so
    # that `mambapoc --help` stays fast (torch is imported inside the commands).
    from mambapoc.cli import doctor, ingest, pipeline, report, tasks, train  # noqa: F401


_register()


def _usage_errors() -> tuple[type[Exception], ...]:
    # Typer >= 0.20 carries its own copy of click; older ones use click itself.
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except ImportError:
            pass
    return tuple(found)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure ends in one line on stderr and a non-zero exit code."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except _usage_errors() as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        print(f"error: {e.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    # With standalone_mode off, click returns the code of a `typer.Exit` instead of exiting.
    if isinstance(rc, int) and rc:
        sys.exit(rc)
