"""summary.md: the executive summary and the caveats as Markdown, for a ticket, a wiki page or a chat."""

from __future__ import annotations

import re

from mambapoc.report.document import (
    Block,
    Bullets,
    Callout,
    Cards,
    Code,
    Document,
    Figure,
    Paragraph,
    Section,
    Subheading,
    Table,
)

# Markdown punctuation and HTML's angle brackets, so that data (log lines, names) renders as written.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def render(doc: Document, sections: list[Section], see_also: str) -> str:
    lines = [f"# {escape(doc.title)}", "", f"_{escape(doc.subtitle)}_", ""]
    for s in sections:
        heading = f"{s.number}. {s.title}" if s.number else s.title
        lines += [f"## {escape(heading)}", ""]
        for b in s.blocks:
            lines += _block(b) + [""]
    if see_also:
        lines += [escape(see_also), ""]
    lines += [f"_{escape(doc.footer)}_", ""]
    return "\n".join(lines)


def _block(b: Block) -> list[str]:
    if isinstance(b, Paragraph):
        return [f"> {escape(b.text)}" if b.tone == "warning" else escape(b.text)]
    if isinstance(b, Subheading):
        return [f"### {escape(b.text)}"]
    if isinstance(b, Bullets):
        return [f"- {escape(i)}" for i in b.items]
    if isinstance(b, Cards):
        return [f"- **{escape(c.label)}: {escape(c.value)}.** {escape(c.detail)}" for c in b.items]
    if isinstance(b, Callout):
        return [f"**{escape(b.title)}**", "", escape(b.text), ""] + [f"- {escape(i)}" for i in b.items]
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return [f"_{escape(b.caption)}_"]
    if isinstance(b, Code):
        fence = "````" if any("```" in line for line in b.lines) else "```"
        return [fence, *b.lines, fence]
    raise TypeError(f"no Markdown for {type(b).__name__}")


def _table(b: Table) -> list[str]:
    columns = max(len(b.headers), max((len(r) for r in b.rows), default=0))
    headers = b.headers or [""] * columns
    align = ["---:" if i >= b.label_columns else "---" for i in range(columns)]
    out = ["| " + " | ".join(escape(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    for row in b.rows:
        cells = [f"**{escape(c.text)}**" if c.failed else escape(c.text) for c in row]
        out.append("| " + " | ".join(cells) + " |")
    if b.caption:
        out += ["", f"_{escape(b.caption)}_"]
    return out

