"""The report's file formats and names, apart from the writers so that recipes can be checked without
loading matplotlib or fpdf2."""

from __future__ import annotations

FORMATS = ("html", "pdf", "md")


def file_names(lang: str) -> dict[str, str]:
    """English keeps the plain names; other languages add their code so that both can sit side by side."""
    suffix = "" if lang == "en" else f".{lang}"
    return {"html": f"report{suffix}.html", "pdf": f"report{suffix}.pdf", "md": f"summary{suffix}.md",
            "csv": "cells.csv"}
