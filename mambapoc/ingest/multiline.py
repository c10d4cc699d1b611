"""Grouping the lines of a line-oriented log into events: a stack trace or a continuation line
belongs to the event it follows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date

from mambapoc.ingest.event import Event
from mambapoc.ingest.formats import LineFormat

# An event is flushed once it has this many lines, so that a file whose lines all fail to match the
# detected format cannot grow one event without bound.
MAX_EVENT_LINES = 1000


def events(lines: Iterable[str], fmt: LineFormat, modified: date, counts: Counter) -> Iterator[Event]:
    """Events from `lines` in format `fmt`. A line that matches no header and cannot join an event
    becomes an event of its own with no fields (counted as `unmatched_lines`)."""
    head: Event | None = None
    tail: list[str] = []
    open_stream: str | None = None  # the stream whose split line `head` is, until its last piece
    pieces = 0
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        joins = head is not None and fmt.continuation is not None and fmt.continuation.match(line)
        m = None if joins else fmt.header.match(line)
        if m is not None and fmt.piece is not None:
            stream, partial = fmt.piece(m)
            if open_stream == stream and head is not None and not tail and pieces < MAX_EVENT_LINES:
                head.message += m["msg"]  # a piece of the same output line: joined as it was written
                head.suffix += line[m.end("msg"):]
                counts["joined_pieces"] += 1
                pieces += 1
                open_stream = stream if partial else None
                continue
            open_stream, pieces = (stream if partial else None), 0
        else:
            open_stream = None
        if m is None and head is not None and (joins or fmt.joins_unmatched):
            tail.append(line)
            if len(tail) >= MAX_EVENT_LINES:
                counts["split_events"] += 1
                yield _finish(head, tail)
                head, tail = None, []
            continue
        if head is not None:
            yield _finish(head, tail)
            tail = []
        if m is None:
            counts["unmatched_lines"] += 1
            head = Event(no, line)
        else:
            ts, level, component = fmt.fields(m, modified)
            start, end = m.span("msg")
            head = Event(
                no,
                line[start:end],
                prefix=line[:start],
                suffix=line[end:],
                timestamp=ts,
                level=fmt.level_of(level),
                level_raw=level,
                component=component,
                fields=_extras(m, fmt.extras) if fmt.extras else None,
            )
    if head is not None:
        yield _finish(head, tail)


def _extras(m, names: tuple[str, ...]) -> dict[str, str] | None:
    # `-` stands for "no value" in most log formats (access logs, BGL, OpenStack's request context).
    found = {name: m[name] for name in names if m[name] and m[name] != "-"}
    return found or None


def _finish(head: Event, tail: list[str]) -> Event:
    # Continuation lines belong to the message, unless the first line ended with text that is not (the
    # text must stay the event as written).
    if tail and head.suffix:
        head.suffix += "\n" + "\n".join(tail)
    elif tail:
        head.message += "\n" + "\n".join(tail)
    return head
