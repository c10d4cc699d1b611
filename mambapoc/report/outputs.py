"""Build the report files of a run directory: assemble the document once, then write each format."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from mambapoc import __version__
from mambapoc.errors import UserError
from mambapoc.fsutil import write_atomic
from mambapoc.report import cells_csv, combine, evidence, findings, html, markdown, method, pdf, summary
from mambapoc.report.combine import Workload
from mambapoc.report.document import Document
from mambapoc.report.files import FORMATS, file_names
from mambapoc.report.i18n import Text
from mambapoc.report.load import Run


def build(
    run_dir: Path | Sequence[Path],
    formats: Iterable[str] = FORMATS,
    lang: str = "en",
    out_dir: Path | None = None,
    workload: Workload | None = None,
    examples: bool = True,
) -> dict[str, Path]:
    """Write the report of `run_dir`, or of several run directories of one dataset side by side, and
    return the path of each file by format: "html", "pdf", "md" as asked, and always "csv". The default
    place is RUN_DIR/report/ (a merged report needs `out_dir`). `workload` re-renders for another
    workload or price from the same measurements; `examples=False` leaves every dataset record out."""
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"unknown report format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    t = Text(lang)
    dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(d) for d in run_dir]
    if len(dirs) > 1 and out_dir is None:
        raise UserError("a report of several runs needs --out DIR (it belongs to none of them)")
    run = combine.load(dirs, workload)
    left_out = "samples_unmasked" if not _masked(run) else None if examples else "samples_left_out"
    if left_out:
        run = dataclasses.replace(run, samples=[])
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    names = file_names(lang)
    written = {"csv": write_atomic(out / names["csv"], cells_csv.render(run).encode("utf-8"))}
    if not formats:
        return written
    doc = compose(run, findings.compute(run), t, left_out)
    if "html" in formats:
        written["html"] = write_atomic(out / names["html"], html.render(doc, t).encode("utf-8"))
    if "pdf" in formats:
        written["pdf"] = write_atomic(out / names["pdf"], pdf.render(doc, t))
    if "md" in formats:
        brief = [s for s in doc.sections if s.id in ("summary", "next")]
        beside = [names[k] for k in ("html", "pdf") if k in formats]
        see_also = t("md_see_also", files=", ".join(beside)) if beside else ""
        written["md"] = write_atomic(out / names["md"], markdown.render(doc, brief, see_also).encode("utf-8"))
    return written


def headline(run_dir: Path | Sequence[Path], lang: str = "en", workload: Workload | None = None) -> str:
    """The verdict and its main numbers in one line, for the command line and logs."""
    dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(d) for d in run_dir]
    run = combine.load(dirs, workload)
    return summary.headline(run, findings.compute(run), Text(lang))


def _masked(run: Run) -> bool:
    """Whether the dataset's records were masked: records of an unmasked dataset never leave it."""
    return bool(((run.dataset or {}).get("masking") or {}).get("enabled", run.dataset is None))


def compose(run: Run, f: findings.Findings, t: Text, samples_note: str | None = None) -> Document:
    sections = [
        summary.section(run, f, t),
        *evidence.sections(run, f, t),
        method.method(run, f, t),
        method.caveats(run, f, t),
    ]
    for number, s in enumerate(sections, 1):
        s.number = number
    sections.append(method.appendix(run, t, samples_note))
    dataset = (run.dataset or {}).get("name") or (run.config.get("dataset") or {}).get("name")
    title = t("title", dataset=dataset) if dataset else t("title_no_dataset")
    pair = [m.name for m in (f.mamba, f.transformer) if m is not None] or [m.name for m in run.models]
    started = sorted(c.started_at for c in run.cells if c.started_at)
    subtitle = t("subtitle", models=" vs ".join(pair), device=summary.device_name(run),
                 date=started[0][:10] if started else "?")
    names = ", ".join(p.resolve().name for p in run.merged) or run.path.resolve().name
    footer = t("footer", version=__version__, run=names)
    return Document(t.lang, t("eyebrow"), title, subtitle, sections, footer)
