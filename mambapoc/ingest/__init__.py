"""Ingest: logs and documents in, a masked, structured dataset directory out.

`ingest()` builds a dataset; `mambapoc.ingest.dataset` finds and reads one. The on-disk format is
described in docs/formats.md, the behaviour in docs/ingest.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mambapoc.ingest.build import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]


def __getattr__(name: str):
    # Loaded on first use: code that only reads datasets (`mambapoc.ingest.dataset`) and the CLI's start-up
    # need not import the parsers, the masker and the progress display.
    if name in __all__:
        from mambapoc.ingest import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
