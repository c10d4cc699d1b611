"""The report as plain blocks of text, tables and figures, decided once and drawn by the HTML, PDF and
Markdown writers. Every string here is plain text (data included); each writer escapes for its format."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    text: str
    tone: str = "plain"  # "plain", "muted" or "warning"


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    detail: str


@dataclass(frozen=True)
class Cards:
    """The executive summary's headline findings, side by side."""

    items: list[Card]


@dataclass(frozen=True)
class Callout:
    """The recommendation: a verdict, why, and the conditions it holds under."""

    title: str
    text: str
    items: list[str]
    tone: str = "neutral"  # "positive", "negative" or "neutral"


@dataclass(frozen=True)
class Cell:
    text: str
    failed: bool = False  # a cell that did not finish (OOM, timeout, error): drawn in red


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    label_columns: int = 1  # columns after these hold numbers and are right-aligned
    caption: str | None = None


@dataclass(frozen=True)
class Figure:
    png: bytes
    caption: str


@dataclass(frozen=True)
class Code:
    """Verbatim text such as log records."""

    lines: list[str]


@dataclass(frozen=True)
class Subheading:
    text: str


Block = Paragraph | Bullets | Cards | Callout | Table | Figure | Code | Subheading


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    number: int | None = None  # set when the document is assembled; the appendix has none


@dataclass
class Document:
    lang: str
    eyebrow: str
    title: str
    subtitle: str
    sections: list[Section]
    footer: str
