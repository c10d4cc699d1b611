"""The numbers behind the report, derived from the cells alone, and what it says when something is missing."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import pytest

from mambapoc.report import cells_csv, findings, fmt, summary
from mambapoc.report.document import Cards, Paragraph
from mambapoc.report.i18n import Text
from mambapoc.report.load import load_run
from mambapoc.report.method import method

FIXTURE = Path(__file__).parent / "data" / "run_fixture"
EN = Text("en")


def fixture_cells() -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / "results.jsonl").read_text().splitlines()]


def run_with(tmp_path: Path, cells: list[dict], tail: str = "") -> Path:
    """The fixture run directory with other cells (and optionally raw text appended to results.jsonl)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    text = "".join(json.dumps(c) + "\n" for c in cells) + tail
    (run / "results.jsonl").write_text(text)
    return run


def median_p50(cells, family, length):
    values = sorted(c["prefill_s"]["p50"] for c in cells
                    if c["family"] == family and c["length_tokens"] == length and c["status"] == "ok")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def test_speed_ratio_is_the_ratio_of_median_prefills():
    f = findings.compute(load_run(FIXTURE))
    cells = fixture_cells()
    assert f.speed.length == 16384
    expected = median_p50(cells, "transformer", 16384) / median_p50(cells, "mamba", 16384)
    assert f.speed.prefill_ratio == pytest.approx(expected)


def test_monthly_cost_and_break_even_follow_from_cells():
    run = load_run(FIXTURE)
    f = findings.compute(run)
    c = f.cost
    assert (c.length, c.new_tokens, c.requests_per_day) == (8192, 16, 20000)
    assert c.mamba.basis == "interpolated" and c.mamba.from_lengths == (4096, 16384)
    assert c.mamba.per_month == pytest.approx(c.mamba.per_request * 20000 * 30)
    assert c.mamba.per_request == pytest.approx((8192 * c.mamba.in_1m + 16 * c.mamba.out_1m) / 1e6)
    be = f.break_even
    assert be.kind == "at" and 1024 < be.length < 4096
    pm, pt = f.profiles[f.mamba.key], f.profiles[f.transformer.key]
    ratio = [findings.request_cost(pm[n], n, 16) / findings.request_cost(pt[n], n, 16) for n in (1024, 4096)]
    assert ratio[0] > 1 > ratio[1]  # the Transformer is cheaper at 1k, Mamba at 4k
    text = summary.break_even_text(f, EN)
    assert f"about {fmt.tokens(be.length)} ({fmt.count(be.length)}) tokens." in text
    below = summary.break_even_text(dataclasses.replace(f, break_even=dataclasses.replace(be, length=553.4)), EN)
    assert below.endswith("from about 553 tokens.")  # said once when both forms are the same


def test_interpolation_is_log_log_and_never_extrapolates():
    assert findings.interpolate({1024: 1.0, 4096: 4.0}, 2048) == (pytest.approx(2.0), "interpolated", (1024, 4096))
    assert findings.interpolate({1024: 1.0, 4096: 4.0}, 4096) == (4.0, "measured", (4096,))
    assert findings.interpolate({1024: 1.0, 4096: 4.0}, 65536) == (4.0, "nearest", (4096,))


def test_accuracy_difference_pools_matched_clean_cells():
    f = findings.compute(load_run(FIXTURE))
    a = f.accuracy
    assert len(a.pairs) == 4  # few-shot and needle at 1k and 4k: the Transformer failed both at 16k
    assert (a.difference.mamba.n, a.difference.transformer.n) == (500, 500)
    lo, hi = a.difference.interval
    assert lo < a.difference.value < hi and a.verdict == "equivalent"
    assert findings.wilson(0, 10)[0] == 0.0 and findings.wilson(10, 10)[1] == pytest.approx(1.0)


def test_calibration_threshold_and_too_few(tmp_path):
    f = findings.compute(load_run(FIXTURE))
    c = f.calibration[f.mamba.key]
    assert c.reason == "ok" and c.accuracy_above >= findings.CALIBRATION_TARGET
    assert c.covered >= findings.CALIBRATION_MIN_INSTANCES
    cells = fixture_cells()
    for cell in cells:
        if cell["status"] == "ok" and "calibration" in cell["metrics"]:
            cell["metrics"]["calibration"] = cell["metrics"]["calibration"][:2]
    few = findings.compute(load_run(run_with(tmp_path, cells)))
    assert few.calibration[few.mamba.key].reason == "too_few"
    assert "review_below_threshold" not in few.recommendation.conditions


def test_one_length_means_no_break_even(tmp_path):
    cells = [c for c in fixture_cells() if c["length_tokens"] == 1024]
    run = load_run(run_with(tmp_path, cells))
    f = findings.compute(run)
    assert f.break_even.kind == "one_length"
    assert "no break-even length" in summary.break_even_text(f, EN)


def test_no_accuracy_task_is_said_plainly(tmp_path):
    cells = [c for c in fixture_cells() if c["task"] == "continuation"]
    run = load_run(run_with(tmp_path, cells))
    f = findings.compute(run)
    assert f.accuracy is None and f.recommendation.verdict == "more_evidence"
    cards = next(b for b in summary.section(run, f, EN).blocks if isinstance(b, Cards))
    assert cards.items[1].value == "Not measured"


def test_a_transformer_that_fails_at_a_length_is_named(tmp_path):
    cells = fixture_cells()
    for c in cells:
        if c["family"] == "transformer" and c["length_tokens"] == 16384:
            c.update(status="oom", error="CUDA out of memory", prefill_s=None, metrics=None)
    run = load_run(run_with(tmp_path, cells))
    f = findings.compute(run)
    assert [p.length for p in f.only_mamba_ran] == [16384] and f.speed.length == 4096
    assert "transformer_failed" in f.recommendation.conditions
    cards = next(b for b in summary.section(run, f, EN).blocks if isinstance(b, Cards))
    assert "The Transformer failed at 16k: OOM." in cards.items[0].detail


def test_torn_lines_are_skipped_and_reported(tmp_path):
    cells = fixture_cells()
    text = "".join(json.dumps(c) + "\n" for c in cells[:3]) + '{"cell_id": "torn", "mod\n'
    run_dir = run_with(tmp_path, cells[3:], tail='{"cell_id": "x", "model": "y", "ta')
    (run_dir / "results.jsonl").write_text(text + (run_dir / "results.jsonl").read_text())
    run = load_run(run_dir)
    assert len(run.cells) == 24 and run.unreadable_lines == 2
    blocks = method(run, findings.compute(run), EN).blocks
    assert any(isinstance(b, Paragraph) and "2 line(s) of results.jsonl" in b.text for b in blocks)


def test_cells_of_a_model_that_never_loaded_and_two_implementations(tmp_path):
    cells = fixture_cells()
    hf_mamba = [dict(c, impl="hf", cross_check=True, model_name="mamba-130m (hf)")
                for c in cells if c["family"] == "mamba"]
    broken = {"cell_id": "org/broken|needle|1024", "model": "org/broken", "impl": "hf", "family": None,
              "task": "needle", "length_tokens": 1024, "status": "error", "error": "cannot load model"}
    (tmp_path / "x").mkdir()
    run_dir = run_with(tmp_path / "x", cells + hf_mamba + [broken])
    (run_dir / "models.json").unlink()
    run = load_run(run_dir)
    assert [m.name for m in run.models] == ["mamba-130m", "pythia-160m (hf)", "mamba-130m (hf)", "org/broken"]
    assert run.models[-1].family == "unknown"
    f = findings.compute(run)
    assert f.mamba.name == "mamba-130m" and len(f.profiles) == 4


def test_cells_csv_is_flat_and_safe_for_spreadsheets(tmp_path):
    cells = fixture_cells()
    cells[0]["error"] = "=HYPERLINK(\"http://x\")"
    rows = list(csv.DictReader(io.StringIO(cells_csv.render(load_run(run_with(tmp_path, cells))))))
    assert rows[0]["error"].startswith("'=")
    assert list(rows[0]) == list(cells_csv.COLUMNS)
    noisy = [r for r in rows if r["noise_rate"] != "0.0"]
    assert len(noisy) == 6 and all(math.isclose(float(r["noise_rate"]), 0.3) for r in noisy)


def test_unstable_timings_are_marked_and_the_summary_says_so(tmp_path):
    from mambapoc.report import evidence

    cells = fixture_cells()
    assert not any(isinstance(b, Paragraph) and "unstable" in b.text
                   for b in summary.section(load_run(FIXTURE), findings.compute(load_run(FIXTURE)), EN).blocks)
    for c in cells:
        if c["family"] == "transformer" and c["length_tokens"] == 16384 and c["status"] == "ok":
            c["unstable"] = "other tasks waited for a CPU 40% of the time"
    run = load_run(run_with(tmp_path, cells))
    f = findings.compute(run)
    context = summary.section(run, f, EN).blocks[-1].text
    assert "at 16k rest on timings that stayed unstable" in context and "40%" in context
    speed = evidence.speed(run, f, EN)
    rows = [[c.text for c in row] for b in speed.blocks if hasattr(b, "rows") for row in b.rows]
    marked = [r for r in rows if any(text.endswith(" ~") for text in r[2:])]
    assert {(r[0], r[1]) for r in marked} == {("pythia-160m", "16k")}
    assert any(isinstance(b, Paragraph) and b.text.startswith("~ marks") for b in speed.blocks)
