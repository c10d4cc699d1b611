"""The report of a run directory: files, self-contained HTML, escaping, PDF sections, Japanese, failed cells."""

from __future__ import annotations

import csv
import json
import re
import shutil
import warnings
from pathlib import Path

import matplotlib
import pytest
import yaml
from pypdf import PdfReader

from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.report import build
from mambapoc.report.i18n import Text
from mambapoc.report.outputs import headline

FIXTURE = Path(__file__).parent / "data" / "run_fixture"
SECTIONS_EN = ["1. Executive summary", "2. Speed", "3. Memory", "4. Accuracy", "5. Robustness", "6. Cost",
               "7. Method and environment", "8. Caveats and next steps", "Appendix"]
SCRIPT = "<script>alert(1)</script>"


def copy_fixture(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """English and Japanese reports of the fixture, side by side in one directory, with the warnings
    raised while drawing them (a missing glyph is one)."""
    out = tmp_path_factory.mktemp("report")
    family_before = list(matplotlib.rcParams["font.family"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        en = build(FIXTURE, out_dir=out)
        ja = build(FIXTURE, lang="ja", out_dir=out)
    return {"en": en, "ja": ja, "out": out, "warnings": [str(w.message) for w in caught],
            "family_before": family_before}


def test_files_for_both_languages_sit_side_by_side(built):
    names = sorted(p.name for p in built["out"].iterdir())
    assert names == ["cells.csv", "report.html", "report.ja.html", "report.ja.pdf", "report.pdf",
                     "summary.ja.md", "summary.md"]
    assert set(built["en"]) == {"html", "pdf", "md", "csv"}


def test_html_requests_nothing_from_another_host(built):
    html = built["en"]["html"].read_text(encoding="utf-8")
    html_ja = built["ja"]["html"].read_text(encoding="utf-8")
    for page in (html, html_ja):
        targets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.I)
        targets += re.findall(r"url\(\s*['\"]?([^'\")]*)", page, flags=re.I)
        assert targets, "expected charts and links"
        assert all(t.startswith(("#", "data:")) for t in targets), [t[:40] for t in targets]
        assert "<link" not in page and "@import" not in page and "<iframe" not in page


def test_data_is_escaped_in_html(tmp_path):
    run = copy_fixture(tmp_path)
    dataset = yaml.safe_load((run / "dataset.yaml").read_text())
    dataset["samples"].insert(0, {"source": "app.log", "line": 7, "text": f"user said {SCRIPT}"})
    dataset["name"] = '<img src=x onerror="alert(2)">'
    (run / "dataset.yaml").write_text(yaml.safe_dump(dataset))
    models = json.loads((run / "models.json").read_text())
    models[0]["description"] = f"trained on {SCRIPT}"
    (run / "models.json").write_text(json.dumps(models))
    paths = build(run, formats=("html",))
    page = paths["html"].read_text(encoding="utf-8")
    assert SCRIPT not in page
    assert "user said &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_pdf_has_the_sections_in_its_outline_and_text(built):
    reader = PdfReader(built["en"]["pdf"])
    assert [o.title for o in reader.outline] == SECTIONS_EN
    first = reader.pages[0].extract_text()
    assert "Executive summary" in first and "Recommendation" in first
    text = "".join(p.extract_text() for p in reader.pages)
    assert "Mamba becomes cheaper per request from about 2.9k (" in text


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_the_executive_summary_is_one_page_of_the_pdf(built, lang):
    reader = PdfReader(built[lang]["pdf"])
    pages = [reader.get_destination_page_number(o) for o in reader.outline]
    assert pages[:2] == [0, 1], "the summary fills page 1 and the next section starts page 2"
    first = reader.pages[0].extract_text()
    assert ("Recommendation" if lang == "en" else "推奨") in first
    assert ("Compared:" if lang == "en" else "比較対象") in first, "its last paragraph is still on page 1"


def test_japanese_pdf_html_and_charts_have_their_glyphs(built):
    reader = PdfReader(built["ja"]["pdf"])
    titles = [o.title for o in reader.outline]
    assert titles[0] == "1. エグゼクティブサマリー" and titles[-1] == "付録"
    first = reader.pages[0].extract_text()
    assert "推奨" in first and "精度" in first
    html = built["ja"]["html"].read_text(encoding="utf-8")
    assert 'lang="ja"' in html and "エグゼクティブサマリー" in html
    assert "@font-face" in html  # the glyphs travel with the file
    missing = [w for w in built["warnings"] if "missing" in w.lower() and "glyph" in w.lower()]
    assert not missing, missing
    assert list(matplotlib.rcParams["font.family"]) == built["family_before"]


def test_failed_cells_show_as_failed(built):
    html = built["en"]["html"].read_text(encoding="utf-8")
    assert '<td class="num failed">OOM</td>' in html
    assert '<td class="num failed">timeout</td>' in html
    assert "CUDA out of memory" in html  # the reason, in the method section
    md = built["en"]["md"].read_text(encoding="utf-8")
    assert "2 did not finish" in md and "16k: OOM" in md
    assert "メモリ不足" in built["ja"]["html"].read_text(encoding="utf-8")
    rows = list(csv.DictReader(built["en"]["csv"].open(encoding="utf-8")))
    assert len(rows) == 24
    assert sorted(r["status"] for r in rows if r["status"] != "ok") == ["oom", "timeout"]
    assert all(r["prefill_p50_s"] == "" for r in rows if r["status"] != "ok")


def test_summary_md_answers_first(built):
    md = built["en"]["md"].read_text(encoding="utf-8")
    assert md.startswith("# Can Mamba replace the Transformer on payments-api?")
    assert "**Recommendation: switch to Mamba for this workload" in md
    assert "Mamba is as accurate, within 5 points" in md and "the Transformer up to 1k" in md
    assert "$19.09 vs $30.82 per month" in md
    assert "8. Caveats and next steps" in md and "report.html, report.pdf" in md


def test_cli_prints_paths_and_headline(tmp_path, capsys):
    main(["report", str(FIXTURE), "--format", "md", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"md: {tmp_path / 'summary.md'}" in out
    assert "Mamba can replace the Transformer (with conditions): prefill 3.6× faster at 16k" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_cli_user_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "nowhere")])
    assert exit_.value.code == 1
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(UserError, match="no finished cells"):
        build(tmp_path)
    with pytest.raises(UserError, match="unknown language"):
        build(FIXTURE, lang="fr")


def test_headline_in_japanese():
    assert headline(FIXTURE, "ja").startswith("条件付きで Mamba は Transformer を置き換え可能：")
    assert Text("ja")("sec_cost") == "コスト"


def test_a_run_with_only_results_of_one_family_still_reports(tmp_path):
    lines = [line for line in (FIXTURE / "results.jsonl").read_text().splitlines() if '"family": "mamba"' in line]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    page = build(tmp_path, formats=("html",))["html"].read_text(encoding="utf-8")
    assert "No comparison: this run lacks a Mamba or a Transformer model." in page
    assert "env.json is missing" in page and "(dataset.yaml) is not in this run directory" in page
    assert "5 repeats per cell" in page  # counted from the cells when config.yaml is absent
