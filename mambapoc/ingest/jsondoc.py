"""Whole-document JSON: a file that is one array of records (`[{…}, {…}]`) or one object holding them
(CloudTrail's `{"Records": [{…}, …]}`), pretty-printed or on one line of any length.

Read as a stream: each element of the array is decoded alone once its text has arrived, so memory is
bounded by the largest element (`limit`), not by the document. The other values of a top-level object
(`"nextToken": …`) are left out; an object holding no array is one record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator

from mambapoc.ingest.event import Event
from mambapoc.ingest.jsonlines import event_from

_DECODER = json.JSONDecoder()
_SPACE = " \t\r\n"


class _Buffer:
    """The document's text from `pos` on, topped up chunk by chunk, and the line `pos` is on."""

    def __init__(self, chunks: Iterable[str]):
        self._chunks = iter(chunks)
        self.text = ""
        self.pos = 0
        self.line = 1
        self.done = False

    def more(self) -> bool:
        """Reads another chunk, dropping what was consumed; False at the end of the document."""
        chunk = next(self._chunks, None)
        if chunk is None:
            self.done = True
            return False
        self.line += self.text.count("\n", 0, self.pos)
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self, skip: str = _SPACE) -> str:
        """The next character that is not in `skip` ('' at the end), moved to."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in skip:
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def line_here(self) -> int:
        return self.line + self.text.count("\n", 0, self.pos)

    def value(self, limit: int) -> tuple[bool, object]:
        """The JSON value that starts here, (False, None) if it is broken or longer than `limit`."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
                if len(self.text) - self.pos > limit or not self.more():
                    return False, None
                continue
            self.pos = end
            return True, value


def _event(no: int, value: object, text_field: str | None, label_field: str | None) -> Event:
    if isinstance(value, dict):
        return event_from(no, value, text_field, label_field)
    return Event(no, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _elements(buf: _Buffer, counts: Counter, limit: int, text_field, label_field) -> Iterator[Event]:
    """The events of the array whose `[` was just read."""
    buf.pos += 1
    while (c := buf.peek(_SPACE + ",")) not in ("]", ""):
        no = buf.line_here()
        ok, value = buf.value(limit)
        if not ok:
            counts["broken_lines"] += 1
            buf.done = True
            return
        yield _event(no, value, text_field, label_field)
    buf.pos += len(c)


def events(
    chunks: Iterable[str], counts: Counter, limit: int, text_field: str | None = None, label_field: str | None = None
) -> Iterator[Event]:
    """One event per element of the document's array (or of each array value of its top-level object)."""
    buf = _Buffer(chunks)
    first = buf.peek()
    if first == "[":
        yield from _elements(buf, counts, limit, text_field, label_field)
        return
    if first != "{":
        counts["broken_lines"] += int(first != "")
        return
    buf.pos += 1
    others: dict = {}
    kept = 0  # characters of `others`, bounded like one element
    streamed = False
    while not buf.done and buf.peek(_SPACE + ",") not in ("}", ""):
        ok, key = buf.value(limit)
        if not ok or buf.peek() != ":":
            counts["broken_lines"] += 1
            return
        buf.pos += 1
        if buf.peek() == "[":
            streamed = True
            yield from _elements(buf, counts, limit, text_field, label_field)
            continue
        ok, value = buf.value(limit)
        if not ok:
            counts["broken_lines"] += 1
            return
        size = len(json.dumps(value, ensure_ascii=False))
        if kept + size <= limit:
            others[str(key)] = value
            kept += size
    if not streamed and others:
        yield event_from(1, others, text_field, label_field)
