"""The `mambapoc` command line. Each stage lives in its own module and adds its commands to `app`."""

from __future__ import annotations

import importlib
import sys

import typer

# Imported for their side effect of adding commands to `app`; kept light at import time so that
# `mambapoc --help` stays fast (torch is imported inside the commands).
from mambapoc.cli import doctor, ingest, pipeline, project, report, tasks, train  # noqa: F401
from mambapoc.cli.app import app
from mambapoc.errors import UserError


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
    # With standalone_mode off, click returns the code of a `typer.Exit` instead of exiting; typer >= 0.20
    # turns Ctrl-C (and our SIGTERM handlers' KeyboardInterrupt) into such an exit, with code 130.
    if isinstance(rc, int) and rc:
        if rc == 130:
            print("interrupted", file=sys.stderr)
        sys.exit(rc)
