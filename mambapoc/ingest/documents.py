"""Prose documents (runbooks, incident reports): chunks of paragraphs under their section heading."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mambapoc.ingest.event import Event

# A chunk ends at the first paragraph break after this many characters, so that chunks are long
# enough to read on their own and short enough to sample into a context.
CHUNK_CHARS = 1500
_ATX = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(```|~~~)")


class _Chunker:
    def __init__(self) -> None:
        self.headings: list[tuple[int, str, str]] = []  # (depth, title, line as written)
        self.lines: list[str] = []
        self.first_line = 0
        self.chars = 0

    def add(self, no: int, line: str) -> None:
        if not self.lines:
            self.first_line = no
        self.lines.append(line)
        self.chars += len(line) + 1

    def heading(self, depth: int, title: str, written: str) -> None:
        self.headings = [h for h in self.headings if h[0] < depth] + [(depth, title, written)]

    def flush(self) -> Iterator[Event]:
        body = "\n".join(self.lines).strip("\n")
        self.lines, self.chars = [], 0
        if not body.strip():
            return
        prefix = "\n".join(h[2] for h in self.headings)
        yield Event(
            self.first_line,
            body,
            prefix=prefix + "\n\n" if prefix else "",
            component=" > ".join(h[1] for h in self.headings) or None,
            mine_template=False,
        )


def events(lines: Iterable[str]) -> Iterator[Event]:
    """Markdown (ATX `#` and setext underlined headings, fenced code kept whole) and plain text
    (paragraphs separated by blank lines). Each chunk's text starts with its heading path."""
    chunker = _Chunker()
    in_fence = False
    blank_before = True
    starts_paragraph = False  # the last line began a paragraph: an underline below makes it a heading
    for no, line in enumerate(lines, start=1):
        blank = not line.strip()
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            atx = _ATX.match(line)
            setext = _SETEXT.match(line) if starts_paragraph else None
            if atx or setext:
                title = chunker.lines.pop() if setext else ""
                yield from chunker.flush()
                if atx:
                    chunker.heading(len(atx[1]), atx[2], line)
                else:
                    chunker.heading(1 if line.strip()[0] == "=" else 2, title.strip(), f"{title}\n{line}")
                blank_before, starts_paragraph = True, False
                continue
            if blank and chunker.chars >= CHUNK_CHARS:
                yield from chunker.flush()
        if chunker.lines or not blank:
            chunker.add(no, line)
        starts_paragraph = blank_before and not blank and not in_fence
        blank_before = blank
        if chunker.chars >= 4 * CHUNK_CHARS:
            # A paragraph or code block that never ends is cut at a line.
            yield from chunker.flush()
    yield from chunker.flush()
