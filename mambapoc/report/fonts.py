"""Fonts for charts and the PDF, found on disk without changing matplotlib's global settings.

Japanese glyphs come from IPAexGothic, which the `matplotlib-fontja` package ships. That package is only
located, never imported: importing it switches matplotlib's default font for every caller in the process.
Latin text uses DejaVu Sans, which ships with matplotlib itself.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path

_JA_PACKAGE = "matplotlib_fontja"
_JA_FILE = Path("fonts", "ipaexg.ttf")
# Families a system may already have (fonts-ipaexfont, fonts-noto-cjk, ...). Only TrueType files qualify:
# the PDF library cannot embed OpenType collections.
_JA_SYSTEM_FAMILIES = ("IPAexGothic", "IPAGothic", "Noto Sans JP", "Noto Sans CJK JP", "TakaoGothic")


@cache
def japanese_font() -> Path | None:
    """A TrueType font with Japanese glyphs, or None when neither the pip package nor a system font has one."""
    spec = importlib.util.find_spec(_JA_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / _JA_FILE
            if candidate.is_file():
                return candidate
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if entry.name in _JA_SYSTEM_FAMILIES and entry.fname.lower().endswith(".ttf"):
            return Path(entry.fname)
    return None


_LATIN_FILES = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}


def latin_font(style: str = "regular") -> Path:
    """DejaVu Sans (regular, bold or mono) from matplotlib's own data: wide Unicode coverage (≥, ×, –) for
    the PDF's Latin text."""
    import matplotlib

    return Path(matplotlib.get_data_path(), "fonts", "ttf", _LATIN_FILES[style])


@cache
def matplotlib_family(path: Path) -> str:
    """Register a font file with matplotlib's font list (not its defaults) and return its family name."""
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def subset(path: Path, text: str) -> bytes:
    """The font cut down to the glyphs `text` uses: small enough to embed a Japanese font in an HTML file so
    that it renders on machines without one."""
    from fontTools import subset as ft_subset

    options = ft_subset.Options()
    options.name_IDs = ["*"]
    font = ft_subset.load_font(str(path), options)
    try:
        subsetter = ft_subset.Subsetter(options)
        subsetter.populate(text=text)
        subsetter.subset(font)
        buf = io.BytesIO()
        ft_subset.save_font(font, buf, options)
    finally:
        font.close()
    return buf.getvalue()
