"""The report as an A4 PDF with fpdf2 (pure Python, installs from pip alone). Same blocks as the HTML; each
section starts a page and is a bookmark in the PDF outline. Fonts are TrueType files embedded as subsets:
DejaVu Sans for Latin text and IPAexGothic for Japanese, each the other's fallback for missing glyphs."""

from __future__ import annotations

import io
import re
import struct

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, WrapMode, XPos, YPos
from fpdf.fonts import FontFace

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

INK = (17, 24, 39)
MUTED = (107, 114, 128)
LINE = (229, 231, 235)
SOFT = (249, 250, 251)
ACCENT = (15, 118, 110)
FAILED = (185, 28, 28)
_CALLOUT = {"positive": ((236, 253, 245), (16, 185, 129)), "negative": ((254, 242, 242), (239, 68, 68)),
            "neutral": ((255, 251, 235), (245, 158, 11))}
_MARGIN = 16
_CJK = "\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
_OPENING = "（「『【〔［"
_CLOSING = "、。，．）」』】〕］：；！？・ー"
# What a line may break between: one CJK character or a run of other non-space characters (a Latin word,
# a number), with any opening bracket before it and closing punctuation after it; or spaces (not the
# no-break space that joins a number to its unit).
_BREAK_UNITS = re.compile(rf"[{_OPENING}]*(?:[{_CJK}]|[^ \t{_CJK}]+)[{_CLOSING}]*|[ \t]+")


class _Pdf(FPDF):
    def __init__(self, title: str, t: Text):
        super().__init__(format="A4")
        self.report_title = title
        self.t = t

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("body", size=7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.report_title, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, self.t("page", page=self.page_no()), align="R")


def render(doc: Document, t: Text) -> bytes:
    pdf = _Pdf(doc.title, t)
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(True, margin=18)
    _fonts(pdf, doc.lang)
    pdf.set_title(doc.title)
    pdf.set_lang(doc.lang)
    pdf.set_creator("mambapoc")
    writer = _Writer(pdf, cjk=doc.lang == "ja")
    pdf.add_page()
    writer.title(doc)
    for i, section in enumerate(doc.sections):
        if i:
            pdf.add_page()
        writer.section(section)
    pdf.set_font("body", size=8)
    pdf.set_text_color(*MUTED)
    pdf.ln(4)
    writer.text(doc.footer, 4)
    return bytes(pdf.output())


def _fonts(pdf: FPDF, lang: str) -> None:
    """The body family is Japanese for `ja` (it has Latin glyphs too), DejaVu otherwise. IPAexGothic has
    no bold face, so bold Japanese reuses the regular one and headings stand out by size and colour."""
    ja = fonts.japanese_font()
    pdf.add_font("latin", "", fonts.latin_font())
    pdf.add_font("latin", "B", fonts.latin_font("bold"))
    pdf.add_font("mono", "", fonts.latin_font("mono"))
    fallbacks = ["latin"]
    if ja is not None:
        pdf.add_font("japanese", "", ja)
        fallbacks.append("japanese")
    if lang == "ja" and ja is not None:
        pdf.add_font("body", "", ja)
        pdf.add_font("body", "B", ja)
    else:
        pdf.add_font("body", "", fonts.latin_font())
        pdf.add_font("body", "B", fonts.latin_font("bold"))
    pdf.set_fallback_fonts(fallbacks, exact_match=False)


class _Writer:
    def __init__(self, pdf: _Pdf, cjk: bool):
        self.pdf = pdf
        self.cjk = cjk

    @property
    def width(self) -> float:
        return self.pdf.w - self.pdf.l_margin - self.pdf.r_margin

    def lines(self, width: float, line_height: float, text: str, new_x: XPos = XPos.LEFT) -> None:
        """Left-aligned wrapped text (fpdf2 justifies by default, which stretches short lines)."""
        self.pdf.multi_cell(width, line_height, self._prewrap(width, text), align="L", new_x=new_x,
                            new_y=YPos.NEXT)

    def text(self, text: str, line_height: float) -> None:
        self.lines(0, line_height, text, new_x=XPos.LMARGIN)

    def _prewrap(self, width: float, text: str) -> str:
        """Japanese has no spaces to break at, and fpdf2's character wrapping would also split Latin words
        ("Transf|ormer", "$0.0|0362"). So lines are broken here, between CJK characters (keeping closing
        punctuation with what it closes) and at spaces, and fpdf2 only lays them out."""
        if not self.cjk:
            return text
        pdf = self.pdf
        room = (width or pdf.w - pdf.r_margin - pdf.get_x()) - 2 * pdf.c_margin
        out = []
        for paragraph in text.split("\n"):
            line = ""
            for unit in _BREAK_UNITS.findall(paragraph):
                if line.strip() and pdf.get_string_width(line + unit) > room:
                    out.append(line.rstrip())
                    line = unit.lstrip()
                else:
                    line += unit
            out.append(line.rstrip())
        return "\n".join(out)

    def _height(self, width: float, line_height: float, text: str) -> float:
        return self.pdf.multi_cell(width, line_height, self._prewrap(width, text), align="L", dry_run=True,
                                   output=MethodReturnValue.HEIGHT)

    def _need(self, height: float) -> None:
        """Start a new page unless `height` millimetres still fit on this one."""
        if self.pdf.get_y() + height > self.pdf.h - self.pdf.b_margin:
            self.pdf.add_page()

    def title(self, doc: Document) -> None:
        pdf = self.pdf
        pdf.set_text_color(*ACCENT)
        pdf.set_font("body", size=8.5)
        self.text(doc.eyebrow.upper(), 5)
        pdf.set_text_color(*INK)
        pdf.set_font("body", "B", 19)
        self.text(doc.title, 9)
        pdf.set_font("body", size=9.5)
        pdf.set_text_color(*MUTED)
        self.text(doc.subtitle, 5.5)
        pdf.ln(2)

    def section(self, s: Section) -> None:
        pdf = self.pdf
        heading = f"{s.number}. {s.title}" if s.number else s.title
        pdf.start_section(heading, level=0)
        pdf.set_font("body", "B", 15)
        pdf.set_text_color(*ACCENT)
        self.text(heading, 8)
        pdf.set_draw_color(*LINE)
        pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
        pdf.ln(3)
        for i, b in enumerate(s.blocks):
            if isinstance(b, Subheading):
                self._need(12 + self._lead_height(s.blocks[i + 1:]))
            self.block(b)

    def _lead_height(self, following: list[Block]) -> float:
        """The height of the paragraphs after a heading up to and including the first figure (or the
        start of a table): what must share the heading's page so that the heading never ends a page alone."""
        self.pdf.set_font("body", size=9.5)
        height = 0.0
        for b in following:
            if isinstance(b, Paragraph):
                height += self._height(self.width, 5, b.text) + 2
            elif isinstance(b, Figure):
                return height + self._figure_height(b)
            else:
                return height + 20
        return height

    def _figure_height(self, b: Figure) -> float:
        # A PNG's header stores its width and height as two big-endian integers at bytes 16 to 24.
        w_px, h_px = struct.unpack(">II", b.png[16:24])
        return self.width * h_px / w_px

    def block(self, b: Block) -> None:
        pdf = self.pdf
        pdf.set_text_color(*INK)
        if isinstance(b, Paragraph):
            pdf.set_font("body", size=8.5 if b.tone == "muted" else 9.5)
            pdf.set_text_color(*(MUTED if b.tone == "muted" else INK))
            if b.tone == "warning":
                self._boxed([b.text], _CALLOUT["neutral"])
            else:
                self.text(b.text, 5)
            pdf.ln(2)
        elif isinstance(b, Subheading):
            pdf.ln(2)
            pdf.set_font("body", "B", 11.5)
            self.text(b.text, 6.5)
            pdf.ln(1)
        elif isinstance(b, Bullets):
            pdf.set_font("body", size=9.5)
            for item in b.items:
                self._bullet(item)
            pdf.ln(2)
        elif isinstance(b, Cards):
            self._cards(b)
        elif isinstance(b, Callout):
            self._callout(b)
        elif isinstance(b, Table):
            self._table(b)
        elif isinstance(b, Figure):
            self._figure(b)
        elif isinstance(b, Code):
            self._code(b)
        else:
            raise TypeError(f"no PDF for {type(b).__name__}")

    def _bullet(self, item: str) -> None:
        pdf = self.pdf
        indent = 5
        pdf.set_x(pdf.l_margin)
        pdf.cell(indent, 5, "•")
        self.lines(self.width - indent, 5, item, new_x=XPos.LMARGIN)

    def _boxed(self, lines: list[str], colours: tuple, title: str | None = None, items: list[str] = ()) -> None:
        """Text on a tinted background with a coloured bar on the left: warnings and the recommendation."""
        pdf = self.pdf
        fill, bar = colours
        pad, inner = 4, self.width - 10
        pdf.set_font("body", "B", 11)
        height = 2 * pad + (self._height(inner, 6, title) + 1 if title else 0)
        pdf.set_font("body", size=9.5)
        height += sum(self._height(inner, 5, line) for line in lines)
        height += sum(self._height(inner - 5, 5, item) + 1 for item in items)
        self._need(height)
        x, y = pdf.l_margin, pdf.get_y()
        pdf.set_fill_color(*fill)
        pdf.rect(x, y, self.width, height, style="F")
        pdf.set_fill_color(*bar)
        pdf.rect(x, y, 1.6, height, style="F")
        pdf.set_xy(x + 6, y + pad)
        if title:
            pdf.set_font("body", "B", 11)
            self.lines(inner, 6, title)
            pdf.ln(1)
        pdf.set_font("body", size=9.5)
        for line in lines:
            pdf.set_x(x + 6)
            self.lines(inner, 5, line)
        for item in items:
            pdf.set_xy(x + 6, pdf.get_y() + 1)
            pdf.cell(5, 5, "•")
            self.lines(inner - 5, 5, item)
        pdf.set_xy(pdf.l_margin, y + height + 3)

    def _callout(self, b: Callout) -> None:
        self._boxed([b.text], _CALLOUT.get(b.tone, _CALLOUT["neutral"]), title=b.title, items=b.items)

    def _cards(self, b: Cards) -> None:
        pdf = self.pdf
        gap = 4
        width = (self.width - gap * (len(b.items) - 1)) / len(b.items)
        inner = width - 6
        heights = []
        for c in b.items:
            pdf.set_font("body", "B", 12.5)
            h = self._height(inner, 6, c.value)
            pdf.set_font("body", size=8)
            heights.append(h + self._height(inner, 4, c.detail) + self._height(inner, 4, c.label) + 10)
        height = max(heights)
        self._need(height)
        y = pdf.get_y()
        for i, c in enumerate(b.items):
            x = pdf.l_margin + i * (width + gap)
            pdf.set_fill_color(*SOFT)
            pdf.set_draw_color(*LINE)
            pdf.rect(x, y, width, height, style="DF")
            pdf.set_xy(x + 3, y + 3)
            pdf.set_font("body", size=7.5)
            pdf.set_text_color(*MUTED)
            self.lines(inner, 4, c.label.upper())
            pdf.set_font("body", "B", 12.5)
            pdf.set_text_color(*ACCENT)
            self.lines(inner, 6, c.value)
            pdf.set_font("body", size=8)
            pdf.set_text_color(*INK)
            pdf.set_xy(x + 3, pdf.get_y() + 1)
            self.lines(inner, 4, c.detail)
        pdf.set_xy(pdf.l_margin, y + height + 4)

    def _figure(self, b: Figure) -> None:
        pdf = self.pdf
        height = self._figure_height(b)
        pdf.set_font("body", size=8)
        self._need(height + self._height(self.width, 4, b.caption) + 2)
        pdf.image(io.BytesIO(b.png), x=pdf.l_margin, w=self.width, h=height, alt_text=b.caption)
        pdf.set_text_color(*MUTED)
        self.text(b.caption, 4)
        pdf.ln(3)

    def _code(self, b: Code) -> None:
        pdf = self.pdf
        pdf.set_font("mono", size=7.5)
        pdf.set_fill_color(*SOFT)
        for line in b.lines:
            pdf.multi_cell(0, 4.2, line, fill=True, wrapmode=WrapMode.CHAR, align="L", new_x=XPos.LMARGIN,
                           new_y=YPos.NEXT)
            pdf.ln(0.8)
        pdf.ln(2)

    def _column_widths(self, b: Table, columns: int) -> list[float]:
        """Each column as wide as its longest text when the table fits; otherwise the widest columns are
        cut down to one common width (and wrap) so that narrow columns of numbers never do. A floor of a
        few characters also keeps CJK wrapping able to place a glyph."""
        floor, padding = 10.0, 6.0
        texts = ([b.headers] if b.headers else []) + [[c.text for c in r] for r in b.rows]
        natural = [max(floor, padding + max((self.pdf.get_string_width(r[i]) for r in texts if i < len(r)),
                                            default=0)) for i in range(columns)]
        if sum(natural) <= self.width:
            return [n * self.width / sum(natural) for n in natural]
        remaining, level = self.width, self.width / columns
        ordered = sorted(natural)
        for i, n in enumerate(ordered):
            share = remaining / (columns - i)
            if n > share:
                level = share
                break
            remaining -= n
        return [min(n, level) for n in natural]

    def _table(self, b: Table) -> None:
        pdf = self.pdf
        pdf.set_font("body", size=7.8)
        pdf.set_draw_color(*LINE)
        columns = max(len(b.headers), max((len(r) for r in b.rows), default=0))
        if not columns:
            return
        self._need(16)
        with pdf.table(
            col_widths=self._column_widths(b, columns),
            width=self.width,
            first_row_as_headings=bool(b.headers),
            headings_style=FontFace(emphasis="BOLD", fill_color=SOFT),
            line_height=4.2,
            padding=(1.2, 1.5),
            text_align="LEFT",
            wrapmode=WrapMode.WORD,
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            if b.headers:
                head = table.row()
                for i, h in enumerate(b.headers):
                    head.cell(h, align="RIGHT" if i >= b.label_columns else "LEFT")
            for r in b.rows:
                row = table.row()
                for i, c in enumerate(r):
                    style = FontFace(color=FAILED, emphasis="BOLD") if c.failed else None
                    row.cell(c.text, align="RIGHT" if i >= b.label_columns else "LEFT", style=style)
        if b.caption:
            pdf.set_font("body", size=7.5)
            pdf.set_text_color(*MUTED)
            pdf.ln(1)
            self.text(b.caption, 4)
        pdf.ln(3)
