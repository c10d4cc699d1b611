"""Reports: charts, HTML, PDF and a plain summary from a run directory.

`build(run_dir, formats=("html", "pdf", "md"), lang="en", out_dir=None)` writes them and returns their paths.
"""

from __future__ import annotations


def __getattr__(name: str):
    # `build` pulls in matplotlib and fpdf2; loading them only when asked keeps `mambapoc doctor` (which
    # needs just `report.fonts`) and `mambapoc --help` fast.
    if name == "build":
        from mambapoc.report.outputs import build

        return build
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
