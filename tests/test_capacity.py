"""Serving capacity: the search for the largest batch, the bounds that cap it, and its cost."""

from __future__ import annotations

import pytest

from mambapoc.bench.capacity import Bounds, Probe, search
from mambapoc.cli import main
from mambapoc.report import findings
from mambapoc.report.load import load_run
from mambapoc.results import read_cells

MB = 2**20


@pytest.mark.parametrize("budget_mb,expected", [(100, 90), (37, 27), (11, 1), (1000, 256)])
def test_the_search_finds_the_largest_batch_that_fits_the_budget(budget_mb, expected):
    bounds = Bounds(memory_bytes=budget_mb * MB, max_batch=256)
    tried = []

    def probe(batch: int) -> Probe:
        tried.append(batch)
        return bounds.judge(batch, 10 * MB + MB * batch, 0.01, 0.1)  # 10 MiB of weights, 1 MiB a request

    found = search(probe, bounds)
    # Never over the budget; below the true largest by less than the bisection's precision (1/16 of the
    # last doubling step).
    assert found.batch <= expected and expected - found.batch < max(1, expected / 16)
    if expected < 256:
        assert found.limit == "memory" and any(p.status in ("oom", "predicted_oom") for p in found.probes)
        assert len(tried) <= 12, "doubling, then a few bisection steps"
    else:
        assert found.limit == "max_batch"


def test_a_probe_far_over_the_budget_is_not_run():
    bounds = Bounds(memory_bytes=100 * MB, max_batch=1024)
    tried = []

    def probe(batch: int) -> Probe:
        tried.append(batch)
        return bounds.judge(batch, 8 * MB * batch, 0.01, 0.1)

    found = search(probe, bounds)
    assert found.batch == 12 and tried[:5] == [1, 2, 4, 8, 16]  # 16 x 8 MiB: over, then bisection

    far = Bounds(memory_bytes=100 * MB, max_batch=1024)
    jump = []

    def steep(batch: int) -> Probe:  # memory explodes past 4: the prediction from 4 stops 8 from running
        jump.append(batch)
        return far.judge(batch, MB * batch if batch <= 4 else 10**12, 0.01, 0.1)

    found = search(steep, far)
    assert 8 in jump and found.batch < 8


def test_latency_bounds_cap_the_batch():
    bounds = Bounds(memory_bytes=10**12, token_latency_s=0.050, ttft_s=1.0, max_batch=512)

    def probe(batch: int) -> Probe:
        return bounds.judge(batch, MB * batch, 0.002 * batch, 0.02 * batch)  # 50 ms a token at batch 25

    found = search(probe, bounds)
    assert found.batch == 25 and found.limit == "latency"
    slow = [p for p in found.probes if p.status == "slow"]
    assert slow and "ms per token over the bound of 50" in slow[0].reason
    ttft_bound = Bounds(memory_bytes=10**12, ttft_s=0.3, max_batch=512)
    assert search(lambda b: ttft_bound.judge(b, MB, 0.001, 0.02 * b), ttft_bound).batch == 15


def test_not_even_one_request_fits():
    bounds = Bounds(memory_bytes=MB)
    found = search(lambda b: bounds.judge(b, 2 * MB, 0.01, 0.1), bounds)
    assert found.batch is None and found.limit == "memory"


FAST = ["--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "2", "--new-tokens", "2",
        "--price-per-hour", "3.6"]


def test_capacity_cells_in_a_sweep_and_their_cost(tiny_models, tiny_dataset, tmp_path):
    data_dir, name = tiny_dataset
    out = tmp_path / "run"
    main(["compare", "--dataset", name, "--data-dir", str(data_dir), "--models",
          f"{tiny_models['mamba']},{tiny_models['llama']}", "--lengths", "512", "--tasks", "continuation",
          "--out", str(out), "--batch-sizes", "1,auto", "--memory-budget", "48MB", "--max-batch", "64", *FAST])
    cells = read_cells(out).cells
    serving = {(c.family, c.task_key): c for c in cells if c.task == "serving"}
    assert len(serving) == 4 and all(c.ok for c in serving.values())
    for family in ("mamba", "transformer"):
        fixed, auto = serving[(family, "serving[batch=1]")], serving[(family, "serving[batch=auto]")]
        assert fixed.batch_size == 1 and fixed.probes == []
        assert auto.batch_size >= 2 and auto.memory_budget_bytes == 48 * 2**20
        statuses = [p["status"] for p in auto.probes]
        assert statuses[0] == "ok" and auto.capacity_limit in ("memory", "max_batch")
        if auto.capacity_limit == "memory":
            assert "oom" in statuses or "predicted_oom" in statuses
        # Throughput over the whole batch; cost = price per second / throughput.
        assert auto.prefill_tok_s == pytest.approx(auto.prompt_tokens * auto.batch_size / auto.prefill_s.p50)
        assert auto.cost_usd_per_1m_input == pytest.approx(0.001 / auto.prefill_tok_s * 1e6)
        assert auto.cost_usd_per_request == pytest.approx(
            0.001 * (auto.prefill_s.p50 + 2 * auto.decode_ms_per_tok / 1000) / auto.batch_size)
    run = load_run(out)
    f = findings.compute(run)
    assert f.cost.at_capacity and f.cost_one_at_a_time is not None
    # One request at a time beside capacity: the serving sweep's own batch-1 cells, not other tasks' cells.
    assert f.cost_one_at_a_time.mamba.in_1m == pytest.approx(serving[("mamba", "serving[batch=1]")].cost_usd_per_1m_input)
    assert f.cost.transformer.in_1m == pytest.approx(serving[("transformer", "serving[batch=auto]")].cost_usd_per_1m_input)
    assert {c.task for c in run.cells} == {"continuation"} and len(run.serving) == 4
    assert all(m.footprint and m.footprint["weights_bytes"] > 0 for m in run.models)
