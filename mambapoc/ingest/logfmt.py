"""logfmt: lines of `key=value` pairs (`time=… level=info msg="…"`), as Go services and Heroku write them.
Each line is a mapping of names to values, read like a JSON object (jsonlines.event_from)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

from mambapoc.ingest.event import Event
from mambapoc.ingest.jsonlines import event_from

_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?=\s|$)')
# A whole line of at least two pairs; what detection asks of a line.
LINE = re.compile(r'\s*(?:[^\s=]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)){2,}$')
_ESCAPES = re.compile(r"\\(.)")


def _value(raw: str) -> str:
    if raw.startswith('"'):
        return _ESCAPES.sub(lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), raw[1:-1])
    return raw


def pairs(line: str) -> dict[str, str]:
    return {m[1]: _value(m[2]) for m in _PAIR.finditer(line)}


def events(
    lines: Iterable[str], counts: Counter, text_field: str | None = None, label_field: str | None = None
) -> Iterator[Event]:
    """One event per line; a line without two pairs is kept as raw text (`broken_lines`)."""
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        found = pairs(line) if LINE.match(line) else {}
        if not found:
            counts["broken_lines"] += 1
            yield Event(no, line)
            continue
        yield event_from(no, found, text_field, label_field)
