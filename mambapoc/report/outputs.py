"""Build the report files of a run directory: assemble the document once, then write each format."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mambapoc import __version__
from mambapoc.errors import UserError
from mambapoc.fsutil import write_atomic
from mambapoc.report import cells_csv, evidence, findings, html, markdown, method, pdf, summary
from mambapoc.report.document import Document
from mambapoc.report.files import FORMATS, file_names
from mambapoc.report.i18n import Text
from mambapoc.report.load import Run, load_run


def build(
    run_dir: Path,
    formats: Iterable[str] = FORMATS,
    lang: str = "en",
    out_dir: Path | None = None,
) -> dict[str, Path]:
    """Write the report of `run_dir` (default into RUN_DIR/report/) and return the path of each file by
    format: "html", "pdf", "md" as asked, and always "csv"."""
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"unknown report format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    t = Text(lang)
    run = load_run(Path(run_dir))
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    names = file_names(lang)
    written = {"csv": write_atomic(out / names["csv"], cells_csv.render(run).encode("utf-8"))}
    if not formats:
        return written
    doc = compose(run, findings.compute(run), t)
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


def headline(run_dir: Path, lang: str = "en") -> str:
    """The verdict and its main numbers in one line, for the command line and logs."""
    run = load_run(Path(run_dir))
    return summary.headline(run, findings.compute(run), Text(lang))


def compose(run: Run, f: findings.Findings, t: Text) -> Document:
    sections = [
        summary.section(run, f, t),
        *evidence.sections(run, f, t),
        method.method(run, f, t),
        method.caveats(run, f, t),
    ]
    for number, s in enumerate(sections, 1):
        s.number = number
    sections.append(method.appendix(run, t))
    dataset = (run.dataset or {}).get("name") or (run.config.get("dataset") or {}).get("name")
    title = t("title", dataset=dataset) if dataset else t("title_no_dataset")
    pair = [m.name for m in (f.mamba, f.transformer) if m is not None] or [m.name for m in run.models]
    started = sorted(c.started_at for c in run.cells if c.started_at)
    subtitle = t("subtitle", models=" vs ".join(pair), device=summary.device_name(run),
                 date=started[0][:10] if started else "?")
    footer = t("footer", version=__version__, run=run.path.resolve().name)
    return Document(t.lang, t("eyebrow"), title, subtitle, sections, footer)
