"""The recommendation's decision table, cell by cell, on synthetic runs (no model runs): each verdict, and a
first sentence that states the same case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mambapoc.report import decision, findings, summary
from mambapoc.report.i18n import Text
from mambapoc.report.load import load_run

EN = Text("en")
ACCURACY = {  # (Mamba correct, n), (Transformer correct, n)
    "better": ((900, 1000), (600, 1000)),
    "equivalent": ((850, 1000), (850, 1000)),
    "worse": ((600, 1000), (850, 1000)),
    "unclear": ((17, 20), (17, 20)),
}
COST = {"cheaper": (1.0, 2.0), "similar": (1.0, 1.05), "dearer": (2.0, 1.0), "unknown": (None, None)}
FIRST = {  # what the first sentence must say for each verdict
    "switch": ("less", "about the same", "more often correctly", "as accurate"),
    "trade_off": ("worth it",),
    "either": ("about the same", "was not compared"),
    "keep": ("not traded for cost", "more"),
    "more_evidence": ("cannot yet tell",),
}


def write_run(root: Path, acc: tuple, cost: tuple, lengths=(1024, 4096), failed: dict | None = None,
              workload: int = 4096) -> Path:
    """A run directory of one Mamba and one Transformer cell per length (needle, n answers, priced so that a
    request costs the given dollars), `failed` = {length: family} for cells that ran out of memory."""
    run = root / "run"
    run.mkdir()
    cells = []
    for family, spec, (correct, n), per_request in (("mamba", "m", acc[0], cost[0]),
                                                     ("transformer", "t", acc[1], cost[1])):
        for length in lengths:
            cell = {"model": spec, "model_name": spec.upper(), "family": family, "task": "needle",
                    "length_tokens": length, "status": "ok", "new_tokens": 16, "batch_size": 1,
                    "metrics": {"accuracy": correct / n, "n": n, "ci95": [0, 1]},
                    "prefill_s": {"p50": 0.1, "p90": 0.1, "min": 0.1, "max": 0.1, "mean": 0.1, "n": 3}}
            if per_request is not None:
                # All of the request's cost on the prompt: $ per 1M input tokens = cost x 1e6 / length.
                cell.update(cost_usd_per_1m_input=per_request * 1e6 / length, cost_usd_per_1m_output=0.0)
            if (failed or {}).get(length) == family:
                cell = {k: cell[k] for k in ("model", "model_name", "family", "task", "length_tokens")}
                cell.update(status="oom", error="out of memory")
            cells.append(cell)
    (run / "results.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    (run / "config.yaml").write_text(yaml.safe_dump({
        "pricing": {"device_name": "cpu: test", "price_per_hour_usd": 1.0},
        "workload": {"requests_per_day": 1000, "length_tokens": workload, "new_tokens": 16}}))
    return run


@pytest.mark.parametrize("acc", decision.ACCURACY)
@pytest.mark.parametrize("cost", decision.COST)
def test_every_cell_of_the_decision_table(tmp_path, acc, cost):
    run = load_run(write_run(tmp_path, ACCURACY[acc], COST[cost]))
    f = findings.compute(run)
    r = f.recommendation
    assert (r.accuracy, r.cost) == (acc, cost)
    assert r.verdict == decision.TABLE[(acc, cost)]
    callout = summary.section(run, f, EN).blocks[0]
    assert callout.title == EN(f"rec_{r.verdict}")
    first = callout.text.split(". ")[0]
    assert any(phrase in first for phrase in FIRST[r.verdict]), (acc, cost, first)
    if acc == "unclear":
        assert "answers per model would settle it" in first and r.settle > 20
    if (acc, cost) == ("better", "dearer"):
        assert first.startswith("Mamba answers 30 points more often correctly") and "$30,000.00 more a month" in first  # $1 a request x 1,000 a day x 30
    if acc == "worse" and cost == "cheaper":
        assert "though it would cost" in first


@pytest.mark.parametrize("failed,verdict,says", [
    ({4096: "transformer"}, "only_mamba", "the Transformer did not finish"),
    ({4096: "mamba"}, "only_transformer", "Mamba did not finish"),
])
def test_a_model_that_could_not_run_at_the_workload_length_decides(tmp_path, failed, verdict, says):
    run = load_run(write_run(tmp_path, ACCURACY["worse"], COST["dearer"], failed=failed))
    f = findings.compute(run)
    assert f.recommendation.verdict == verdict
    assert says in summary.section(run, f, EN).blocks[0].text and "OOM" in summary.why(run, f, EN)


def test_neither_model_ran_at_the_workload_length(tmp_path):
    run = load_run(write_run(tmp_path, ACCURACY["better"], COST["cheaper"], lengths=(1024, 4096, 8192),
                             failed={8192: "mamba"}, workload=8192))
    f = findings.compute(run)
    assert f.recommendation.verdict == "only_transformer"
    # A cell of each family failed at the workload length: nobody's.
    run2_root = tmp_path / "b"
    run2_root.mkdir()
    run2 = write_run(run2_root, ACCURACY["better"], COST["cheaper"], lengths=(1024, 8192), workload=8192)
    lines = [json.loads(x) for x in (run2 / "results.jsonl").read_text().splitlines()]
    for c in lines:
        if c["length_tokens"] == 8192:
            c.update(status="timeout", error="slow")
            c.pop("metrics")
    (run2 / "results.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
    f2 = findings.compute(load_run(run2))
    assert f2.recommendation.verdict == "neither"


def test_the_answer_by_length_and_where_it_flips(tmp_path):
    run_dir = write_run(tmp_path, ACCURACY["equivalent"], COST["cheaper"], lengths=(1024, 4096, 16384))
    lines = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    for c in lines:  # Mamba dearer at 1k, cheaper from 4k
        if c["family"] == "mamba" and c["length_tokens"] == 1024:
            c["cost_usd_per_1m_input"] *= 4
    (run_dir / "results.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
    run = load_run(run_dir)
    f = findings.compute(run)
    assert f.recommendation.by_length == {1024: "keep", 4096: "switch", 16384: "switch"}
    text = summary.bands_text(f, EN)
    assert text.startswith("The answer changes with prompt length: the Transformer up to 1k; Mamba from 4k.")
    assert "cheaper one from about" in text


def test_accuracy_classes_follow_the_interval_and_the_margin():
    assert decision.accuracy_class(0.01, 0.2, 0.05) == "better"
    assert decision.accuracy_class(-0.04, 0.2, 0.05) == "equivalent"
    assert decision.accuracy_class(-0.3, -0.06, 0.05) == "worse"
    assert decision.accuracy_class(-0.3, 0.1, 0.05) == "unclear"
    assert decision.cost_class(1.0, 1.09) == "similar" and decision.cost_class(1.0, 1.2) == "cheaper"
    assert decision.cost_class(None, 1.0) == "unknown"
