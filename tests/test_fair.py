"""The same treatment for every family, and figures that a wrong formula or unit would break."""

from __future__ import annotations

import math

import pytest
import torch

from mambapoc.bench import cost, worker
from mambapoc.bench.memory import PeakMemory
from mambapoc.bench.plan import Planned
from mambapoc.models.footprint import footprint
from mambapoc.models.registry import load
from mambapoc.results import Cell, Timing
from mambapoc.tasks.spec import TaskSpec

MB = 1 << 20


@pytest.fixture(scope="module")
def pair(tiny_models):
    return {name: load(str(path)) for name, path in tiny_models.items()}


def _ids(lm, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(lm.tokenizer), (1, n), generator=g)


# --- cost and timing arithmetic, against numbers worked out by hand --------------------------------------


def test_cell_costs_are_price_over_throughput():
    cell = Cell(model="m", task="t", length_tokens=1000, status="ok", batch_size=2, new_tokens=16,
                prefill_s=Timing(0.5, 0.6, 0.4, 0.7, 0.5, 5), prefill_tok_s=4000.0, decode_tok_s=100.0,
                decode_ms_per_tok=20.0)
    c = cell.priced(price_per_hour=3.6)  # $0.001 a second
    assert c.price_per_hour_usd == 3.6
    assert c.cost_usd_per_1m_input == pytest.approx(0.25)  # 1e6 tokens / 4000 per s = 250 s
    assert c.cost_usd_per_1m_output == pytest.approx(10.0)  # 1e6 / 100 = 10,000 s
    assert c.cost_usd_per_request == pytest.approx(0.00041)  # (0.5 + 16 x 0.020) s / 2 requests


def test_a_cpu_is_priced_per_thread_used(tmp_path):
    prices = tmp_path / "p.yaml"
    prices.write_text("devices:\n  - {match: cpu, label: CPU, usd_per_hour: 0.05, per: thread}\n"
                      "  - {match: H100, usd_per_hour: 3.5}\n")
    cpu = cost.price_for("cpu: Some EPYC", str(prices), None, threads=8)
    assert cpu["price_per_hour_usd"] == pytest.approx(0.40) and "x 8 threads" in cpu["source"]
    assert cost.price_for("NVIDIA H100 80GB", str(prices), None, threads=8)["price_per_hour_usd"] == 3.5
    assert cost.price_for("cpu", None, 0.7, threads=8)["price_per_hour_usd"] == 0.7


# --- equal prefill, best decode ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mamba", "llama"])
def test_chunked_prefill_reads_the_same_prompt(pair, name):
    lm = pair[name]
    ids = _ids(lm, 200)
    with torch.inference_mode():
        lm.prefill_chunk = 0
        whole, _ = lm.prefill(ids, 4)
        lm.prefill_chunk = 64
        pieces, cache = lm.prefill(ids, 4)
        step, _ = lm.decode_step(pieces.argmax(-1, keepdim=True), cache)
    lm.prefill_chunk = 0
    assert torch.allclose(whole, pieces, atol=1e-4)
    assert torch.isfinite(step).all()


def test_a_static_kv_cache_decodes_as_the_dynamic_one_and_says_which(pair):
    lm = pair["llama"]
    ids = _ids(lm, 100)
    outs = {}
    for kind in ("static", "dynamic"):
        lm.kv_cache = kind
        with torch.inference_mode():
            last, cache = lm.prefill(ids, 5)
            seq = []
            for _ in range(5):
                seq.append(last)
                last, cache = lm.decode_step(last.argmax(-1, keepdim=True), cache)
        outs[kind] = (torch.stack(seq), type(cache).__name__, lm.decode_path)
    lm.kv_cache = "static"
    assert torch.allclose(outs["static"][0], outs["dynamic"][0], atol=1e-4)
    assert outs["static"][1] == "StaticCache" and outs["static"][2] == "static KV cache"
    assert outs["dynamic"][2] == "dynamic KV cache"


def test_a_model_without_a_static_cache_falls_back_and_says_so(pair, monkeypatch):
    import transformers

    lm = pair["llama"]

    def refuse(*a, **k):
        raise ValueError("this architecture has no static cache")

    monkeypatch.setattr(transformers, "StaticCache", refuse)
    with torch.inference_mode():
        last, cache = lm.prefill(_ids(lm, 50), 2)
        lm.decode_step(last.argmax(-1, keepdim=True), cache)
    assert lm.decode_path.startswith("dynamic KV cache (no static cache: ValueError: this architecture")
    lm.static_refused = None


def test_compiled_decoding_gives_the_same_logits(pair):
    lm = pair["llama"]
    ids = _ids(lm, 40)
    with torch.inference_mode():
        last, cache = lm.prefill(ids, 3)
        eager, _ = lm.decode_step(last.argmax(-1, keepdim=True), cache)
        lm.compile_decode()
        try:
            last, cache = lm.prefill(ids, 3)
            compiled, _ = lm.decode_step(last.argmax(-1, keepdim=True), cache)
        finally:
            lm._step, lm.compiled = lm._decode, False
    assert torch.allclose(eager, compiled, atol=1e-4)


# --- state sizes and memory, against the real tensors --------------------------------------------------


def _tensor_bytes(obj, seen=None) -> int:
    """Bytes of every distinct tensor reachable from a cache object (its attributes, lists, dicts)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if obj.data_ptr() in seen:
            return 0
        seen.add(obj.data_ptr())
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(x, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(x, seen) for x in obj.values())
    if hasattr(obj, "__dict__"):
        return sum(_tensor_bytes(x, seen) for x in vars(obj).values())
    return 0


def _kv_bytes(cache) -> int:
    """Bytes of the keys and values a transformers cache holds (not its bookkeeping counters)."""
    return sum(_tensor_bytes([layer.keys, layer.values]) for layer in cache.layers)


def _analytic(lm, length: int) -> int:
    """Per request at `length`, from the config alone (models/footprint.py), in the model's dtype."""
    return footprint(lm.model.config.to_dict(), lm.dtype.itemsize).per_request(length)


@pytest.mark.parametrize("length", [37, 300])
def test_carried_state_is_what_the_config_says_and_what_the_cache_holds(pair, length):
    llama, mamba = pair["llama"], pair["mamba"]
    with torch.inference_mode():
        llama.kv_cache = "dynamic"
        _, kv = llama.prefill(_ids(llama, length))
        llama.kv_cache = "static"
        _, static = llama.prefill(_ids(llama, length), 7)
        _, state = mamba.prefill(_ids(mamba, length))
    assert _kv_bytes(kv) == llama.cache_bytes(kv) == _analytic(llama, length)
    assert _kv_bytes(static) == _analytic(llama, length + 7)  # room for the tokens to come
    assert llama.cache_bytes(static) - _kv_bytes(static) <= 16 * llama.model.config.num_hidden_layers  # counters
    assert _tensor_bytes(state) == mamba.cache_bytes(state) == _analytic(mamba, length) == _analytic(mamba, 9 * length)


class _Outbox(list):
    put = list.append


def _cell(lm, length, task="continuation"):
    cfg = {"instances": 2, "seed": 0, "batch_size": 1, "new_tokens": 2, "warmup": 0, "repeats": 1,
           "min_time_s": 0, "remeasure": 0, "max_spread": 10.0}
    return worker.run_cell(lm, Planned("m", "ours", False, TaskSpec(task), length), _records(), cfg,
                           PeakMemory(lm.device), _Outbox())


def _records():
    from conftest import _log_lines

    return [{"text": line, "message": line, "level": "INFO"} for line in _log_lines(600)]


def test_peak_memory_is_plausible_and_grows_with_a_transformers_context(pair):
    llama = pair["llama"]
    small, large = _cell(llama, 128), _cell(llama, 1024)
    assert 0 < small["peak_mem_bytes"] < 8 * MB and small["mem_kind"] == "cpu_allocated"
    assert large["peak_mem_bytes"] > small["peak_mem_bytes"] + _analytic(llama, 1024) - _analytic(llama, 128)
    assert small["state_bytes"] == llama.cache_bytes(llama.prefill(llama.as_ids(list(range(1, 129))), 2)[1])
    assert small["prefill_chunk"] == llama.prefill_chunk and small["decode_path"] == llama.decode_path


def test_a_memory_figure_that_cannot_be_measured_is_missing_with_its_reason(pair, monkeypatch):
    def broken(work):
        raise RuntimeError("profiler unavailable")

    monkeypatch.setattr(worker, "tensor_peak", broken)
    out = _cell(pair["mamba"], 128)
    assert "peak_mem_bytes" not in out and "profiler unavailable" in out["mem_error"]
    assert not math.isnan(out["prefill_s"].p50)
