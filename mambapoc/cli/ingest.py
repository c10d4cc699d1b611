"""`mambapoc ingest` and `mambapoc datasets`: datasets built from logs and documents, listed and inspected."""

from __future__ import annotations

import itertools
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mambapoc.cli.app import app
from mambapoc.ingest.readers import DEFAULT_MAX_LINE_BYTES

_DATA_DIR_HELP = "Where datasets live (default: $MAMBAPOC_DATA_DIR, else ./data)."
_FORMATS_HELP = (
    "Format of every input instead of detecting it per file: syslog, syslog5424, access, apache-error, log4j, "
    "hdfs, android, zookeeper, openstack, windows-cbs, bgl, nginx-error, cri, jsonl, logfmt, json, windows-xml, "
    "csv, tsv, document or plain."
)


def _shown(path: Path) -> str:
    """A path relative to the current directory when it is under it, else as it is."""
    resolved, cwd = Path(path).resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(cwd)) if resolved.is_relative_to(cwd) else str(path)


@app.command("ingest")
def ingest_command(
    paths: list[str] = typer.Argument(
        ...,
        help="Files, directories (read recursively) or compressed files (.gz, .bz2, .xz, .zip).",
        show_default=False,
    ),
    name: str | None = typer.Option(
        None, "--name", help="Dataset name (default: the input's name, or the folder holding all inputs)."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    fmt: str = typer.Option("auto", "--format", help=_FORMATS_HELP),
    text_field: str | None = typer.Option(
        None,
        "--text-field",
        help="CSV/TSV column(s) holding the text, comma-separated, or the JSON key of the message.",
    ),
    label_field: str | None = typer.Option(
        None,
        "--label-field",
        help="CSV/TSV column or JSON key holding a label (default: a column named label, category, ...).",
    ),
    no_mask: bool = typer.Option(
        False,
        "--no-mask",
        help="Keep e-mails, addresses, keys and tokens as they are (masking is on by default).",
    ),
    mask_regex: list[str] = typer.Option(
        [], "--mask-regex", help="A regular expression whose matches are masked too; repeat for several."
    ),
    mask_extra: list[str] = typer.Option(
        [],
        "--mask-extra",
        "--mask",
        help="Also mask these kinds, off by default: phone, name (comma-separated, e.g. --mask phone,name).",
    ),
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        help="Layout of every input line, in the placeholders of Drain/LogPAI: "
        "'<Date> <Time> <Pid> <Level> <Component>: <Content>' (<Content> is the message; other names are kept "
        "as fields). Instead of detecting it.",
    ),
    log_regex: str | None = typer.Option(
        None,
        "--log-regex",
        help="A regular expression matching the start of every input line, with named groups ts, level, "
        "component, message (other groups are kept as fields). Instead of detecting the format.",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild the dataset even if it is up to date."),
    max_line_bytes: int = typer.Option(
        DEFAULT_MAX_LINE_BYTES,
        "--max-line-bytes",
        min=1,
        help="Lines longer than this are cut (and counted).",
    ),
) -> None:
    """Turn logs and documents into a masked, structured dataset: DATA_DIR/NAME/ with manifest.yaml and
    records.jsonl.gz. Formats are detected per file; the sources are only read."""
    from mambapoc.ingest import ingest

    result = ingest(
        paths,
        name=name,
        data_dir=data_dir,
        fmt=fmt,
        text_field=text_field,
        label_field=label_field,
        mask=not no_mask,
        mask_regex=mask_regex,
        mask_extra=mask_extra,
        force=force,
        max_line_bytes=max_line_bytes,
        log_format=log_format,
        log_regex=log_regex,
    )
    console = Console(soft_wrap=True)
    m = result.manifest
    # The next commands must find the dataset where it was written.
    where = f" --data-dir {data_dir}" if data_dir is not None else ""
    ds = m["name"]
    if result.skipped_reason:
        console.print(
            f"Dataset {ds} at {_shown(result.path)} is up to date ({result.skipped_reason}); nothing to do. "
            "Pass --force to rebuild it."
        )
        console.print(f"Next: mambapoc datasets show {ds}{where}")
        return
    err = Console(stderr=True, soft_wrap=True)
    counts = m["counts"]
    for f in m["skipped_files"]:
        err.print(f"[yellow]warning:[/] {escape(f['path'])} looks binary; skipped")
    notes = {
        "truncated_lines": "lines cut at --max-line-bytes",
        "decode_errors": "lines not valid UTF-8 (decoded with replacement characters)",
        "broken_lines": "broken JSON lines or CSV rows (JSON kept as raw text)",
    }
    for key, what in notes.items():
        if counts[key]:
            err.print(f"[yellow]warning:[/] {counts[key]:,} {what}")
    masked = sum(m["masking"].get("counts", {}).values())
    mask_note = f"{masked:,} values masked" if m["masking"]["enabled"] else "masking off"
    console.print(
        f"Dataset written to {_shown(result.path)} ({counts['records']:,} records from {len(m['sources'])} "
        f"source{'s' * (len(m['sources']) != 1)}, {m['templates']['count']:,} templates, {mask_note})."
    )
    console.print(f"Next: mambapoc datasets show {ds}{where}, then mambapoc compare --dataset {ds}{where}")


datasets_app = typer.Typer(
    help="List the datasets, or show one with `mambapoc datasets show NAME`.", invoke_without_command=True
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.callback(invoke_without_command=True)
def datasets(
    ctx: typer.Context, data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP)
) -> None:
    """List the datasets: name, records, sources and when each was created."""
    if ctx.invoked_subcommand is not None:
        return
    from mambapoc.ingest.dataset import default_data_dir, list_datasets, read_manifest

    root = data_dir if data_dir is not None else default_data_dir()
    found = list_datasets(root)
    console = Console(soft_wrap=True)
    if not found:
        console.print(f"No datasets in {_shown(root)}. Next: mambapoc ingest PATH... (try sample_data/logs)")
        return
    rows = []
    for path in found:
        m = read_manifest(path)
        rows.append((path.name, f"{m['counts']['records']:,}", len(m["sources"]), m["created"]))
    console.print(_table(f"Datasets in {_shown(root)}", ("name", "records", "sources", "created"), rows))
    console.print("Next: mambapoc datasets show NAME")


_NUMERIC = {"id", "records", "sources", "count", "occurrences", "distinct", "confidence", "records with it"}


def _table(title: str, columns: tuple[str, ...], rows) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row))
    return table


def _samples(path: Path, manifest: dict, n: int) -> list[dict]:
    """The first record of each of the first `n` sources that have records: a glimpse of each kind."""
    from mambapoc.ingest.dataset import iter_records

    starts, offset = [], 0
    for src in manifest["sources"]:
        if src["records"]:
            starts.append(offset)
        offset += src["records"]
    wanted = set(starts[:n])
    if not wanted:
        return []
    return [r for r in itertools.islice(iter_records(path), max(wanted) + 1) if r["id"] in wanted]


@datasets_app.command("show")
def show(
    name: str = typer.Argument(
        ..., help="Dataset name (under the data directory) or dataset directory.", show_default=False
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    samples: int = typer.Option(
        3, "--samples", min=0, help="How many sample records to print (one per source)."
    ),
) -> None:
    """Show a dataset: sources, counts, masking, field coverage, templates, levels, labels, samples."""
    from mambapoc.ingest.dataset import check_records, read_manifest, resolve_dataset

    path = resolve_dataset(name, data_dir)
    m = read_manifest(path)
    check_records(path, m)
    c = Console(soft_wrap=True)
    counts = m["counts"]
    c.print(
        f"[bold]{escape(m['name'])}[/] at {_shown(path)}: {counts['records']:,} records from "
        f"{counts['lines']:,} lines, created {m['created']} by mambapoc {m['tool_version']}"
    )
    c.print(
        _table(
            "Sources",
            ("path", "format", "confidence", "records"),
            ((s["path"], s["format"], f"{s['confidence']:.2f}", f"{s['records']:,}") for s in m["sources"]),
        )
    )
    # Printed whole, not in the table, so that a layout can be copied into --log-format.
    for s in m["sources"]:
        if s.get("layout"):
            how = "learned" if s["format"] == "induced" else "declared"
            c.print(f"Layout of {s['path']} ({how}): {s['layout']}", markup=False, highlight=False)
    c.print(_table("Counts", ("what", "count"), ((k, f"{v:,}") for k, v in counts.items())))
    masking = m["masking"]
    if masking["enabled"]:
        c.print(
            _table(
                "Masked values",
                ("kind", "occurrences", "distinct"),
                ((k, f"{v:,}", f"{masking['distinct'].get(k, 0):,}") for k, v in masking["counts"].items()),
            )
        )
    else:
        c.print("Masking was off for this dataset.")
    c.print(
        _table(
            "Field coverage",
            ("field", "records with it"),
            ((f, f"{share:.0%}") for f, share in m["fields"].items()),
        )
    )
    if m["levels"]:
        c.print(_table("Levels", ("level", "records"), ((k, f"{v:,}") for k, v in m["levels"].items())))
    if m["labels"]:
        c.print(
            _table(
                f"Labels ({m['distinct_labels']} distinct)",
                ("label", "records"),
                ((k, f"{v:,}") for k, v in m["labels"].items()),
            )
        )
    t = m["templates"]
    c.print(
        _table(
            f"Top templates ({t['count']:,} in all)",
            ("id", "records", "template"),
            ((x["id"], f"{x['count']:,}", x["template"][:160]) for x in t["top"][:10]),
        )
    )
    for r in _samples(path, m, samples):
        text = r["text"] if len(r["text"]) <= 400 else r["text"][:400] + " …"
        c.print(
            f"[bold]#{r['id']}[/] {escape(r['source'])}:{r['line']} level={r['level']} "
            f"template={r['template_id']} label={escape(str(r['label']))}\n{escape(text)}\n"
        )
    where = f" --data-dir {data_dir}" if data_dir is not None else ""
    c.print(
        f"Records: {_shown(path / 'records.jsonl.gz')}. Next: mambapoc compare --dataset {m['name']}{where}"
    )
