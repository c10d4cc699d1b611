"""Guessing a file's format from its name and its first lines, and learning its layout when no known
format describes it."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

from mambapoc.ingest import eventlog, induce, logfmt
from mambapoc.ingest.families import LINE_FORMATS
from mambapoc.ingest.formats import LineFormat

STRUCTURED = tuple(name for name in LINE_FORMATS if name != "plain")
# Formats read by a reader of their own rather than line by line against a header.
DOCUMENT_FORMATS = ("jsonl", "logfmt", "json", "windows-xml", "csv", "tsv", "document")
FORMATS = (*STRUCTURED, *DOCUMENT_FORMATS, "plain")
DOCUMENT_SUFFIXES = {".md", ".markdown", ".rst", ".txt"}
# Below this share of matching lines a file is not taken to be in a structured format.
MIN_CONFIDENCE = 0.5
# From this share on, a known format is taken unless a learned layout reads more of the same lines.
GOOD_CONFIDENCE = 0.9
COMPARE_SAMPLE = 500
MIN_COMPARE_LINES = 20
_DECODER = json.JSONDecoder()
# Lines that continue an event (stack frames, indented text) say nothing about the format.
_CONTINUATION = re.compile(r"\s|Caused by:|\.\.\. \d+ more|[\w$.]+(?:Exception|Error|Throwable)\b|$")


@dataclass(frozen=True)
class Choice:
    """How a source is read: its format's name and the confidence in it (the share of event lines it
    matches), the line format for line-oriented ones, and for a learned or declared layout its
    description (`<Date> <Time> <Level> <Content>`)."""

    format: str
    confidence: float
    line_format: LineFormat | None = None
    layout: str | None = None


def content_suffix(name: str) -> str:
    """The suffix that tells the content: `app.log.1.gz` → `.log`, `events.jsonl.xz` → `.jsonl`."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    while suffixes and (
        suffixes[-1] in (".gz", ".bz2", ".xz", ".zip", ".tar", ".tgz") or suffixes[-1][1:].isdigit()
    ):
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return False


def _column_consistency(lines: list[str], delimiter: str) -> float:
    """Share of rows as wide as the header (the last sampled line may be cut short, so it is left out)."""
    rows = [r for r in csv.reader((ln + "\n" for ln in lines[:-1] or lines), delimiter=delimiter) if r]
    if not rows or len(rows[0]) < 2:
        return 0.0
    width = len(rows[0])
    # Event Viewer's CSV export has one column more than its header names (the description).
    return round(sum(len(r) in (width, width + 1) for r in rows) / len(rows), 2)


def _is_json_document(lines: list[str]) -> bool:
    """One JSON array or object over many lines (or one long line), not an object per line: its first
    element decodes, followed by `,` or `]` (or its first key by `:`). A log line opening with a bracket
    (`[2024-03-12 …] INFO …`) does not."""
    text = "\n".join(lines).lstrip()
    first = text.partition("\n")[0]
    if _is_json_object(first):
        # A whole document on one line: one object holding the records (`{"Records": [{…}, …]}`).
        heads = [ln for ln in lines if ln.strip()]
        return len(heads) == 1 and any(
            isinstance(v, list) and v and all(isinstance(x, dict) for x in v) for v in json.loads(first).values()
        )
    if not text.startswith(("[", "{")):
        return False
    rest = text[1:].lstrip()
    if text[0] == "[" and rest.startswith("]"):
        return True
    try:
        _, end = _DECODER.raw_decode(rest)
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return False
    if text[0] == "{" and not rest.startswith('"'):
        return False
    return rest[end:].lstrip()[:1] in ((":",) if text[0] == "{" else (",", "]"))


def scores(lines: list[str]) -> dict[str, float]:
    """Share of event-starting lines each structured format (and JSON lines, logfmt) matches."""
    heads = [ln for ln in lines if not _CONTINUATION.match(ln)]
    if not heads:
        return {}
    out = {
        name: sum(1 for ln in heads if LINE_FORMATS[name].header.match(ln)) / len(heads)
        for name in STRUCTURED
    }
    out["jsonl"] = sum(1 for ln in heads if _is_json_object(ln)) / len(heads)
    out["logfmt"] = sum(1 for ln in heads if logfmt.LINE.match(ln)) / len(heads)
    return out


def detect(name: str, lines: list[str]) -> tuple[str, float]:
    """(format, confidence in 0..1) among the known formats for a source called `name` whose first lines
    are `lines`. The content decides for logs; the suffix decides for tables and documents, and breaks
    the tie when nothing structured matches (a `.txt` of prose is a document, an unknown file plain)."""
    suffix = content_suffix(name)
    if suffix in (".csv", ".tsv", ".tab"):
        delimiter = "," if suffix == ".csv" else "\t"
        return ("csv" if suffix == ".csv" else "tsv"), _column_consistency(lines, delimiter)
    if suffix in (".md", ".markdown", ".rst"):
        return "document", 1.0
    head = "\n".join(lines[:50])
    if eventlog.SCHEMA in head or (suffix == ".xml" and "<Event" in head):
        return "windows-xml", 1.0
    if _is_json_document(lines):
        return "json", 1.0
    found = scores(lines)
    best = max(found, key=found.get, default=None)
    if best is not None and found[best] >= MIN_CONFIDENCE:
        return best, round(found[best], 2)
    unmatched = round(1.0 - (found[best] if best else 0.0), 2)
    return ("document" if suffix in DOCUMENT_SUFFIXES else "plain"), unmatched


def _reads_more(learned: LineFormat, known: LineFormat, lines: list[str]) -> bool:
    """Whether a learned layout understands more of the lines than a known format that matches them: a
    longer header on most event lines (a log4j-like line whose pid and thread the log4j format would
    leave in the message), and never less (no timestamp, level or component the known one finds)."""
    heads = [ln for ln in lines if not _CONTINUATION.match(ln)]
    longer = 0
    today = date.today()
    for ln in heads:
        k, m = known.header.match(ln), learned.header.match(ln)
        if k is None or m is None:
            continue
        if any(a and not b for a, b in zip(known.fields(k, today), learned.fields(m, today), strict=True)):
            return False
        longer += m.start("msg") > k.start("msg")
    return longer >= GOOD_CONFIDENCE * len(heads)


def choose(name: str, lines: list[str]) -> Choice:
    """How to read the source: a known format that matches well, unless a layout learned from its lines
    (induce.py) reads more of them; else a learned layout that parses more lines than any known format;
    else the known format, plain lines or a document."""
    fmt, confidence = detect(name, lines)
    known = fmt in STRUCTURED
    if fmt in DOCUMENT_FORMATS and fmt != "document":
        return Choice(fmt, confidence, LINE_FORMATS.get(fmt))
    if known and confidence >= GOOD_CONFIDENCE:
        # A smaller sample: the known format already reads the file, the question is only how much of it.
        # A few lines say too little against a format known to match them.
        sample = lines[:COMPARE_SAMPLE]
        layout = induce.induce(sample) if len(sample) >= MIN_COMPARE_LINES else None
        if layout is not None and _reads_more(layout.line_format(), LINE_FORMATS[fmt], sample):
            return Choice(induce.FORMAT, layout.confidence, layout.line_format(), layout.describe())
        return Choice(fmt, confidence, LINE_FORMATS[fmt])
    if fmt != "document" or content_suffix(name) not in (".md", ".markdown", ".rst"):
        layout = induce.induce(lines)
        if layout is not None and layout.confidence > (confidence if known else 0.0):
            return Choice(induce.FORMAT, layout.confidence, layout.line_format(), layout.describe())
    return Choice(fmt, confidence, LINE_FORMATS.get(fmt))
