"""Guessing a file's format from its name and its first lines."""

from __future__ import annotations

import csv
import json
import re
from pathlib import PurePosixPath

from mambapoc.ingest.formats import LINE_FORMATS

STRUCTURED = ("syslog", "syslog5424", "access", "apache-error", "log4j", "hdfs")
FORMATS = (*STRUCTURED, "jsonl", "csv", "tsv", "document", "plain")
DOCUMENT_SUFFIXES = {".md", ".markdown", ".rst", ".txt"}
# Below this share of matching lines a file is not taken to be in a structured format.
MIN_CONFIDENCE = 0.5
# Lines that continue an event (stack frames, indented text) say nothing about the format.
_CONTINUATION = re.compile(r"\s|Caused by:|\.\.\. \d+ more|[\w$.]+(?:Exception|Error|Throwable)\b|$")


def content_suffix(name: str) -> str:
    """The suffix that tells the content: `app.log.1.gz` → `.log`, `events.jsonl.xz` → `.jsonl`."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    while suffixes and (suffixes[-1] in (".gz", ".bz2", ".xz", ".zip") or suffixes[-1][1:].isdigit()):
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _column_consistency(lines: list[str], delimiter: str) -> float:
    """Share of rows as wide as the header (the last sampled line may be cut short, so it is left out)."""
    rows = [r for r in csv.reader((ln + "\n" for ln in lines[:-1] or lines), delimiter=delimiter) if r]
    if not rows or len(rows[0]) < 2:
        return 0.0
    return round(sum(len(r) == len(rows[0]) for r in rows) / len(rows), 2)


def scores(lines: list[str]) -> dict[str, float]:
    """Share of event-starting lines each structured format (and JSON lines) matches."""
    heads = [ln for ln in lines if not _CONTINUATION.match(ln)]
    if not heads:
        return {}
    out = {
        name: sum(1 for ln in heads if LINE_FORMATS[name].header.match(ln)) / len(heads)
        for name in STRUCTURED
    }
    out["jsonl"] = sum(1 for ln in heads if _is_json_object(ln)) / len(heads)
    return out


def detect(name: str, lines: list[str]) -> tuple[str, float]:
    """(format, confidence in 0..1) for a source called `name` whose first lines are `lines`. The content
    decides for logs; the suffix decides for tables and documents, and breaks the tie when nothing
    structured matches (a `.txt` of prose is a document, an unknown file is plain lines)."""
    suffix = content_suffix(name)
    if suffix in (".csv", ".tsv", ".tab"):
        delimiter = "," if suffix == ".csv" else "\t"
        return ("csv" if suffix == ".csv" else "tsv"), _column_consistency(lines, delimiter)
    if suffix in (".md", ".markdown", ".rst"):
        return "document", 1.0
    found = scores(lines)
    best = max(found, key=found.get, default=None)
    if best is not None and found[best] >= MIN_CONFIDENCE:
        return best, round(found[best], 2)
    unmatched = round(1.0 - (found[best] if best else 0.0), 2)
    return ("document" if suffix in DOCUMENT_SUFFIXES else "plain"), unmatched
