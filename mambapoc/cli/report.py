"""`mambapoc report`: the HTML, PDF and Markdown report of a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from mambapoc.cli.app import app
from mambapoc.errors import UserError


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `mambapoc compare`.", show_default=False),
    formats: str = typer.Option("html,pdf,md", "--format", help="Comma-separated: html, pdf, md."),
    lang: str = typer.Option("en", "--lang", help="Language of the report: en or ja."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: RUN_DIR/report/)."),
) -> None:
    """Write the report a manager can read: a recommendation with its conditions, then speed, memory,
    accuracy, robustness and cost against context length, and how it was measured. Also writes cells.csv
    with every measured cell."""
    from mambapoc.report import build
    from mambapoc.report.outputs import headline

    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not wanted:
        raise UserError("--format is empty: give one or more of html, pdf, md")
    paths = build(run_dir, formats=wanted, lang=lang, out_dir=out)
    for kind, path in paths.items():
        typer.echo(f"{kind:>4}: {path}")
    typer.echo(headline(run_dir, lang))
    if "html" in paths:
        typer.echo(f"Open {paths['html']} in a browser; it is one file and works offline.")
