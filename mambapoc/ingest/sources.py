"""One source from text to events: how it is read (declared, forced, detected or learned) and the reader
for that format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from mambapoc.ingest import documents, eventlog, induce, jsondoc, jsonlines, logfmt, multiline, tabular
from mambapoc.ingest.declared import FORMAT as DECLARED
from mambapoc.ingest.declared import Declared, line_format
from mambapoc.ingest.detect import Choice, choose
from mambapoc.ingest.event import Event
from mambapoc.ingest.families import LINE_FORMATS
from mambapoc.ingest.readers import LineReader, Stream


def choice_for(stream: Stream, reader: LineReader, fmt: str, declared: Declared | None) -> Choice:
    """A declared format first (an error if it matches under half the lines), then `fmt` unless it is
    `auto`, else what detection and induction make of the first lines."""
    lines = reader.sample(induce.SAMPLE)
    if declared:
        parser, share = line_format(declared, lines, stream.name)
        return Choice(DECLARED, share, parser, declared.describe())
    if fmt != "auto":
        return Choice(fmt, 1.0, LINE_FORMATS.get(fmt))
    return choose(stream.name, lines)


def events(
    choice: Choice,
    reader: LineReader,
    stream: Stream,
    counts: Counter,
    text_field: str | None,
    label_field: str | None,
) -> Iterator[Event]:
    fmt = choice.format
    if fmt == "jsonl":
        return jsonlines.events(reader, counts, text_field, label_field)
    if fmt == "logfmt":
        return logfmt.events(reader, counts, text_field, label_field)
    if fmt == "json":
        # An element may be as long as 16 of the longest lines kept: a JSON document has no lines to cut.
        return jsondoc.events(reader.text(), counts, 16 * reader.max_line_bytes, text_field, label_field)
    if fmt == "windows-xml":
        return eventlog.events(reader, counts, text_field, label_field)
    if fmt in ("csv", "tsv"):
        return tabular.events(reader, "," if fmt == "csv" else "\t", stream.name, counts, text_field, label_field)
    if fmt == "document":
        return documents.events(reader)
    return multiline.events(reader, choice.line_format, stream.modified, counts)
