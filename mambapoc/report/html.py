"""One self-contained HTML file: the CSS, the charts (base64 PNG) and, for Japanese, a font cut down to the
glyphs used are all inline, so the file opens offline and asks no other host for anything.

Every string of the document is escaped here and only here; the template holds no data.
"""

from __future__ import annotations

import base64
from html import escape
from importlib import resources
from string import Template

from mambapoc.report import fonts
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
from mambapoc.report.i18n import Text

_EMBEDDED_FAMILY = "Report JA"


def render(doc: Document, t: Text) -> str:
    template = Template(resources.files("mambapoc.report").joinpath("template.html").read_text(encoding="utf-8"))
    css = resources.files("mambapoc.report").joinpath("style.css").read_text(encoding="utf-8")
    body = "\n".join(_section(s) for s in doc.sections)
    toc = "\n".join(f'    <li><a href="#{escape(s.id)}">{escape(_heading(s))}</a></li>' for s in doc.sections)
    if doc.lang == "ja":
        css += _embedded_font_css(doc, t)
    return template.substitute(
        lang=escape(doc.lang),
        title=escape(doc.title),
        subtitle=escape(doc.subtitle),
        eyebrow=escape(doc.eyebrow),
        contents=escape(t("contents")),
        css=css,
        toc=toc,
        body=body,
        footer=escape(doc.footer),
    )


def _embedded_font_css(doc: Document, t: Text) -> str:
    """Japanese glyphs for readers whose system lacks a Japanese font (a bare Linux box, a kiosk)."""
    font = fonts.japanese_font()
    if font is None:
        return ""
    data = base64.b64encode(fonts.subset(font, _all_text(doc, t))).decode("ascii")
    return (
        f'\n@font-face {{ font-family: "{_EMBEDDED_FAMILY}"; '
        f'src: url(data:font/ttf;base64,{data}) format("truetype"); }}\n'
        f':root {{ --font-first: "{_EMBEDDED_FAMILY}"; }}\n'
    )


def _all_text(doc: Document, t: Text) -> str:
    parts = [doc.eyebrow, doc.title, doc.subtitle, doc.footer, t("contents")]
    for s in doc.sections:
        parts.append(_heading(s))
        for b in s.blocks:
            parts.extend(_block_text(b))
    text = "".join(parts)
    # The stylesheet upper-cases some labels, so their capitals must be in the font too.
    return text + text.upper()


def _block_text(b: Block) -> list[str]:
    if isinstance(b, Paragraph | Subheading):
        return [b.text]
    if isinstance(b, Bullets):
        return b.items
    if isinstance(b, Code):
        return b.lines
    if isinstance(b, Cards):
        return [x for c in b.items for x in (c.label, c.value, c.detail)]
    if isinstance(b, Callout):
        return [b.title, b.text, *b.items]
    if isinstance(b, Table):
        return [*b.headers, *(c.text for row in b.rows for c in row), b.caption or ""]
    if isinstance(b, Figure):
        return [b.caption]
    return []


def _heading(s: Section) -> str:
    return f"{s.number}. {s.title}" if s.number else s.title


def _section(s: Section) -> str:
    inner = "\n".join(_block(b) for b in s.blocks)
    return f'<section id="{escape(s.id)}">\n<h2>{escape(_heading(s))}</h2>\n{inner}\n</section>'


def _block(b: Block) -> str:
    if isinstance(b, Paragraph):
        cls = f' class="{b.tone}"' if b.tone != "plain" else ""
        return f"<p{cls}>{escape(b.text)}</p>"
    if isinstance(b, Subheading):
        return f"<h3>{escape(b.text)}</h3>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Cards):
        cards = "".join(
            f'<div class="card"><div class="card-label">{escape(c.label)}</div>'
            f'<div class="card-value">{escape(c.value)}</div><p>{escape(c.detail)}</p></div>'
            for c in b.items
        )
        return f'<div class="cards">{cards}</div>'
    if isinstance(b, Callout):
        items = "".join(f"<li>{escape(i)}</li>" for i in b.items)
        return (
            f'<div class="callout {escape(b.tone)}"><h3>{escape(b.title)}</h3><p>{escape(b.text)}</p>'
            + (f"<ul>{items}</ul>" if items else "")
            + "</div>"
        )
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(b.caption)}">'
            f"<figcaption>{escape(b.caption)}</figcaption></figure>"
        )
    if isinstance(b, Code):
        return "<pre><code>" + "\n".join(escape(line) for line in b.lines) + "</code></pre>"
    raise TypeError(f"no HTML for {type(b).__name__}")


def _table(b: Table) -> str:
    def cls(i: int, failed: bool = False) -> str:
        names = (["num"] if i >= b.label_columns else []) + (["failed"] if failed else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = ""
    if b.headers:
        head = "<thead><tr>" + "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(b.headers)) + "</tr></thead>"
    rows = "".join(
        "<tr>" + "".join(f"<td{cls(i, c.failed)}>{escape(c.text)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in b.rows
    )
    caption = f"<caption>{escape(b.caption)}</caption>" if b.caption else ""
    return f'<div class="table-wrap"><table>{caption}{head}<tbody>{rows}</tbody></table></div>'
