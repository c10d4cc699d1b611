"""`mambapoc report`: the HTML, PDF and Markdown report of one run directory, or of several side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from mambapoc.cli.app import app
from mambapoc.errors import UserError


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `mambapoc compare`; several "
                                          "runs of one dataset (CPU and GPU, two model pairs) make one report "
                                          "with each run's models side by side.", show_default=False),
    formats: str = typer.Option("html,pdf,md", "--format", help="Comma-separated: html, pdf, md."),
    lang: str = typer.Option("en", "--lang", help="Language of the report: en or ja."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: RUN_DIR/report/; required "
                                    "for several runs)."),
    requests_per_day: int = typer.Option(None, help="Re-render for this many requests a day (costs only; "
                                         "nothing is measured again)."),
    workload_length: str = typer.Option(None, help="Re-render for prompts of this length, e.g. 8k (costs "
                                        "only)."),
    new_tokens: int = typer.Option(None, help="Re-render for this many generated tokens per request "
                                   "(costs only)."),
    price_per_hour: float = typer.Option(None, help="Re-render at this price of a device-hour in USD."),
    no_examples: bool = typer.Option(False, "--no-examples", help="Leave every record of the dataset out of "
                                     "the report (it is shared beyond the team that ran it)."),
) -> None:
    """Write the report a manager can read: a recommendation with its conditions, then speed, memory,
    accuracy, robustness and cost against context length, and how it was measured. Also writes cells.csv
    with every measured cell."""
    from mambapoc.report import build
    from mambapoc.report.combine import Workload
    from mambapoc.report.outputs import headline
    from mambapoc.tasks.spec import parse_length

    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not wanted:
        raise UserError("--format is empty: give one or more of html, pdf, md")
    length = parse_length(workload_length) if workload_length is not None else None
    workload = Workload(requests_per_day, length, new_tokens, price_per_hour)
    paths = build(run_dirs, formats=wanted, lang=lang, out_dir=out, workload=workload, examples=not no_examples)
    for kind, path in paths.items():
        typer.echo(f"{kind:>4}: {path}")
    typer.echo(headline(run_dirs, lang, workload))
    if "html" in paths:
        typer.echo(f"Open {paths['html']} in a browser; it is one file and works offline.")
