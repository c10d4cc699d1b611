"""CSV and TSV exports with a header row: a text column (or several) and optionally a label column."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator

from mambapoc.errors import UserError
from mambapoc.ingest.event import Event
from mambapoc.ingest.fields import normalize_level
from mambapoc.ingest.timestamps import parse_timestamp

# Column names tried in order when the user names none.
TEXT_COLUMNS = ("text", "message", "description", "body", "content", "summary", "subject", "msg")
LABEL_COLUMNS = ("label", "category", "class", "target", "intent", "labels")
TIME_COLUMNS = (
    "timestamp",
    "@timestamp",
    "time",
    "created_at",
    "created",
    "date",
    "datetime",
    "date and time",
    "timecreated",
    "timegenerated",
)
# Windows event exports name the level LevelDisplayName (Get-WinEvent) or EntryType (Get-EventLog).
LEVEL_COLUMNS = ("leveldisplayname", "entrytype", "level", "severity", "loglevel")
COMPONENT_COLUMNS = ("component", "logger", "source", "providername", "service", "program")


def _column(header: list[str], wanted: Iterable[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(w) for w in wanted if w in lowered), None)


def _named_columns(header: list[str], spec: str, source: str) -> list[int]:
    """Indices of the comma-separated column names in `spec`, each required to exist."""
    lowered = [h.strip().lower() for h in header]
    out = []
    for name in spec.split(","):
        if name.strip().lower() not in lowered:
            raise UserError(f"{source}: no column {name.strip()!r}; columns are: {', '.join(header)}")
        out.append(lowered.index(name.strip().lower()))
    return out


def _rows(reader, counts: Counter) -> Iterator[tuple[int, list[str]]]:
    """(first line, row) for each non-empty row; a row csv cannot parse is counted and skipped. csv's own
    limit on a field's size (128 KiB) stays: it bounds what an unclosed quote can gather."""
    last_line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            counts["broken_lines"] += 1
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        if any(cell.strip() for cell in row):
            yield first_line, row


def _cell(row: list[str], i: int | None) -> str | None:
    if i is None or i >= len(row):
        return None
    return row[i].strip() or None


def events(
    lines: Iterable[str],
    delimiter: str,
    source: str,
    counts: Counter,
    text_field: str | None = None,
    label_field: str | None = None,
) -> Iterator[Event]:
    """One event per data row. The text is the text column(s) alone, joined by newlines: the other
    columns, and above all the label, stay out of what a model reads. Without `text_field`, a column
    with a usual name is used, else the one with the longest values in the first rows."""
    # csv needs the line ends back to keep newlines inside quoted fields.
    reader = csv.reader((ln + "\n" for ln in lines), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    rows = _rows(reader, counts)
    first_rows = list(itertools.islice(rows, 100))
    if sum(len(r) == len(header) + 1 for _, r in first_rows) > len(first_rows) / 2:
        # Event Viewer's export: the description is a last column the header does not name.
        header = [*header, "description"]
    if text_field:
        text_cols = _named_columns(header, text_field, source)
    else:
        auto = _column(header, TEXT_COLUMNS)
        if auto is None:
            auto = max(range(len(header)), key=lambda i: sum(len(_cell(r, i) or "") for _, r in first_rows))
        text_cols = [auto]
    label_col = (
        _named_columns(header, label_field, source)[0] if label_field else _column(header, LABEL_COLUMNS)
    )
    time_col = _column(header, TIME_COLUMNS)
    level_col = _column(header, LEVEL_COLUMNS)
    component_col = _column(header, COMPONENT_COLUMNS)
    for first_line, row in itertools.chain(first_rows, rows):
        if len(row) != len(header):
            counts["broken_lines"] += 1
        when, level = _cell(row, time_col), _cell(row, level_col)
        yield Event(
            first_line,
            "\n".join(c for c in (_cell(row, i) for i in text_cols) if c),
            timestamp=parse_timestamp(when) if when else None,
            level=normalize_level(level),
            level_raw=level,
            component=_cell(row, component_col),
            label=_cell(row, label_col),
        )
