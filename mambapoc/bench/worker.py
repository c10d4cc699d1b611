"""The worker process: one model, loaded once, measures the cells its parent sends, one at a time.

Started through `mambapoc.bench.launch`, so it dies with its parent. Messages, parent to worker: a
`Planned` cell, or None to stop. Worker to parent: ("ready", info) once the model is loaded and warm,
then per cell ("start", cell_id), ("measuring", baseline) once the prompts are built and the memory
baseline is taken (the memory limit applies from here), ("cell", (cell_id, measured)); ("fatal",
message) when the model cannot be loaded.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict

import torch

from mambapoc.bench.capacity import Bounds, Probe, search
from mambapoc.bench.memory import PeakMemory, is_oom, limit_gpu, tensor_peak
from mambapoc.bench.plan import Planned
from mambapoc.bench.timing import measure, sync
from mambapoc.errors import UserError
from mambapoc.results import Timing

MAX_PRESSURE = 0.2  # share of a measurement's time other tasks may wait for a CPU before it is "busy"
WARMUP_TOKENS = 64


def serve(lm, ids: torch.Tensor, new_tokens: int) -> dict[str, float]:
    """One request: prefill the prompt, then decode `new_tokens` greedily; the durations of each part."""
    sync(lm.device)
    t0 = time.perf_counter()
    last, cache = lm.prefill(ids, new_tokens)
    sync(lm.device)
    t1 = time.perf_counter()
    tok = last.argmax(-1, keepdim=True)
    tok.cpu()  # the first token reaches the host: that is time-to-first-token
    t2 = time.perf_counter()
    for _ in range(new_tokens):
        last, cache = lm.decode_step(tok, cache)
        tok = last.argmax(-1, keepdim=True)
    tok.cpu()
    t3 = time.perf_counter()
    return {"prefill": t1 - t0, "ttft": t2 - t0, "decode": t3 - t2}


def measure_speed(lm, prompt_ids: list[int], batch: int, new_tokens: int, cfg: dict) -> dict:
    """Prefill, time to first token and greedy decoding of `new_tokens`, repeated and judged for stability;
    keyed by the fields of `mambapoc.results.Cell` they fill."""
    ids = lm.as_ids(prompt_ids, batch)

    def once() -> dict[str, float]:
        return serve(lm, ids, new_tokens)

    with torch.inference_mode():
        m = measure(once, cfg["warmup"], cfg["repeats"], cfg["min_time_s"], retries=cfg["remeasure"],
                    max_spread=cfg["max_spread"], max_pressure=MAX_PRESSURE)
    prefill, decode = Timing.of(m.samples["prefill"]), Timing.of(m.samples["decode"])
    decode_s_per_tok = decode.p50 / new_tokens
    tokens = len(prompt_ids) * batch
    return {
        "prefill_s": prefill,
        "ttft_s": Timing.of(m.samples["ttft"]),
        "decode_s": decode,
        "prefill_tok_s": tokens / prefill.p50,
        "decode_ms_per_tok": decode_s_per_tok * 1000.0,
        "decode_tok_s": batch / decode_s_per_tok,
        "new_tokens": new_tokens,
        "prompt_tokens": len(prompt_ids),
        "timing_attempts": m.attempts,
        "unstable": m.verdict.reason,
        "load_avg_1m": m.conditions.load_avg_1m,
        "cpu_pressure": m.conditions.cpu_pressure,
        "cpu_util": m.conditions.cpu_util,
    }


def warm_up(lm, batch: int) -> None:
    """One short prefill and decode before the first cell, so that one-time allocations and compilation
    land in every cell's memory baseline and no cell's timing."""
    with torch.inference_mode():
        last, cache = lm.prefill(lm.as_ids(list(range(1, WARMUP_TOKENS + 1)), batch), 2)
        for _ in range(2):
            last, cache = lm.decode_step(last.argmax(-1, keepdim=True), cache)
    sync(lm.device)


def run_cell(lm, cell: Planned, records: list[dict], cfg: dict, mem: PeakMemory, outbox) -> dict:
    """The measured fields of one cell (names of `mambapoc.results.Cell` fields). Peak memory covers the
    prefill and decoding of the prompt, not building the prompts nor scoring them."""
    from mambapoc.tasks import build_instances, score

    instances = build_instances(
        cell.task.name, records, lm.tokenizer, cell.length_tokens,
        n=cfg["instances"], seed=cfg["seed"], **cell.task.options,
    )
    prompt = instances[0].prompt_ids
    mem.reset()
    outbox.put(("measuring", mem.baseline))
    out = measure_speed(lm, prompt, cfg["batch_size"], cfg["new_tokens"], cfg)
    out.update(mem.read())
    if lm.device.type == "cpu":
        # After the timed runs, so that compilation and first-run allocations are behind it.
        ids = lm.as_ids(prompt, cfg["batch_size"])
        try:
            with torch.inference_mode():
                out["peak_mem_bytes"] = tensor_peak(lambda: serve(lm, ids, cfg["new_tokens"]))
            out["mem_kind"] = "cpu_allocated"
        except Exception as e:  # noqa: BLE001 - a missing figure says why, the cell stands
            out["mem_error"] = f"peak memory not measured: {type(e).__name__}: {e}"
    out["prefill_chunk"] = lm.prefill_chunk
    out["decode_path"] = lm.decode_path
    out["state_bytes"] = carried_bytes(lm, prompt, cfg)
    t0 = time.perf_counter()
    out["metrics"] = score(cell.task.name, lm, instances)
    out["score_s"] = time.perf_counter() - t0
    return out


def carried_bytes(lm, prompt: list[int], cfg: dict, batch: int | None = None) -> int:
    """Bytes of the cache a request carries into decoding (KV cache, recurrent state, or both), measured
    on the cache object after a prefill of the prompt with room for the new tokens."""
    with torch.inference_mode():
        _, cache = lm.prefill(lm.as_ids(prompt, batch or cfg["batch_size"]), cfg["new_tokens"])
    return lm.cache_bytes(cache)


def serve_at(lm, prompt: list[int], batch: int, cfg: dict, mem: PeakMemory) -> dict:
    """Speed and memory of requests served `batch` at a time: throughput aggregated over the batch,
    latency per request."""
    mem.reset()
    out = measure_speed(lm, prompt, batch, cfg["new_tokens"], cfg)
    out.update(mem.read())
    if lm.device.type == "cpu":
        ids = lm.as_ids(prompt, batch)
        with torch.inference_mode():
            out.update(peak_mem_bytes=tensor_peak(lambda: serve(lm, ids, cfg["new_tokens"])), mem_kind="cpu_allocated")
    out.update(batch_size=batch, state_bytes=carried_bytes(lm, prompt, cfg, batch))
    return out


def probe_at(lm, prompt: list[int], batch: int, cfg: dict, mem: PeakMemory, bounds: Bounds) -> Probe:
    """One quick run at `batch`, judged by `bounds`: the memory it needs (weights included) and its
    latencies. The allocator refusing (a GPU's memory fraction) is an over-budget probe too."""
    ids = lm.as_ids(prompt, batch)
    try:
        with torch.inference_mode():
            serve(lm, ids, cfg["new_tokens"])  # shapes warm
            mem.reset()
            if lm.device.type == "cpu":
                peak = tensor_peak(lambda: serve(lm, ids, cfg["new_tokens"]))
                run = serve(lm, ids, cfg["new_tokens"])
            else:
                run = serve(lm, ids, cfg["new_tokens"])
                peak = mem.read()["peak_mem_bytes"]
    except Exception as e:  # noqa: BLE001 - an allocation refused at this batch is the probe's result
        if not is_oom(e):
            raise
        if lm.device.type == "cuda":
            torch.cuda.empty_cache()
        return Probe(batch, "oom", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return bounds.judge(batch, weights_bytes(lm) + peak, run["decode"] / cfg["new_tokens"], run["ttft"])


def run_serving_cell(lm, cell: Planned, records: list[dict], cfg: dict, mem: PeakMemory, outbox) -> dict:
    """A serving cell: throughput and latency at a given batch, or at the largest batch that fits."""
    from mambapoc.tasks import build_instances

    prompt = build_instances(cell.task.name, records, lm.tokenizer, cell.length_tokens, n=1, seed=cfg["seed"],
                             **cell.task.options)[0].prompt_ids
    mem.reset()
    outbox.put(("measuring", mem.baseline))
    budget = cfg["memory_budget_bytes"] or free_memory(lm.device)
    extra = {"memory_budget_bytes": budget, "weights_bytes": weights_bytes(lm), "prompt_tokens": len(prompt)}
    if cell.batch != "auto":
        return {**serve_at(lm, prompt, int(cell.batch), cfg, mem), **extra}
    bounds = Bounds(budget, cfg["max_token_latency_s"], cfg["max_ttft_s"], cfg["max_batch"])
    found = search(lambda b: probe_at(lm, prompt, b, cfg, mem, bounds), bounds)
    extra.update(capacity_limit=found.limit, probes=[p.to_json() for p in found.probes])
    if found.batch is None:
        raise UserError(f"not even one request fits: {found.probes[0].reason}")
    return {**serve_at(lm, prompt, found.batch, cfg, mem), **extra}


def weights_bytes(lm) -> int:
    return sum(t.numel() * t.element_size() for t in (*lm.model.parameters(), *lm.model.buffers()))


def free_memory(device) -> int:
    """What a serving budget may take by default: the GPU's free memory, or on a CPU the memory available
    to processes plus what this worker already holds (its weights count against the budget)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_allocated(device)
    import psutil

    from mambapoc.bench.memory import rss_bytes

    return psutil.virtual_memory().available + (rss_bytes() or 0)


def _failure(e: Exception) -> dict:
    status = "oom" if is_oom(e) else "error"
    first = str(e).splitlines()[0] if str(e) else ""
    result = {"status": status, "error": f"{type(e).__name__}: {first}"}
    if status == "error":
        result["traceback"] = traceback.format_exc(limit=6)
    return result


def main(spec: str, impl: str, cfg: dict, dataset_dir: str, inbox, outbox) -> None:
    try:
        if cfg.get("cpus"):
            # A share of the CPU (--devices cpu:N): its cores only, one torch thread each.
            os.sched_setaffinity(0, cfg["cpus"])
            torch.set_num_threads(len(cfg["cpus"]))
        elif cfg.get("threads"):
            torch.set_num_threads(cfg["threads"])
        if str(cfg["device"]).startswith("cuda:"):
            # Kernels, streams and allocator statistics that name no device use the current one: this one.
            torch.cuda.set_device(torch.device(cfg["device"]))
        torch.manual_seed(cfg["seed"])
        from mambapoc.ingest.dataset import load_records
        from mambapoc.models.registry import load

        lm = load(spec, device=cfg["device"], dtype=cfg["dtype"], impl=impl)
        lm.prefill_chunk = cfg["prefill_chunk"]
        if hasattr(lm, "kv_cache"):
            lm.kv_cache = cfg["kv_cache"]
        if cfg["compile"]:
            lm.compile_decode()
        records = load_records(dataset_dir)
        warm_up(lm, cfg["batch_size"])
        mem = PeakMemory(lm.device)
        if cfg.get("memory_limit_bytes") and lm.device.type == "cuda":
            limit_gpu(lm.device, cfg["memory_limit_bytes"])
    except UserError as e:
        outbox.put(("fatal", str(e)))
        return
    except Exception as e:  # noqa: BLE001 - reported to the parent as the model's failure
        outbox.put(("fatal", f"loading {spec} failed: {type(e).__name__}: {e}"))
        return
    outbox.put(("ready", {**asdict(lm.info), "torch_threads": torch.get_num_threads()}))
    for cell in iter(inbox.get, None):
        outbox.put(("start", cell.cell_id))
        try:
            run = run_cell if cell.batch is None else run_serving_cell
            result = {"status": "ok", **run(lm, cell, records, cfg, mem, outbox)}
        except UserError as e:
            result = {"status": "error", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - every failure becomes a result cell, the sweep goes on
            result = _failure(e)
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
        outbox.put(("cell", (cell.cell_id, result)))
