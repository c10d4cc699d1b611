"""The worker process: one model, loaded once, runs its cells one after another.

It runs in a freshly spawned interpreter so that models never share memory, allocator state or thread
pools, and so that the parent can kill it on a timeout. Messages to the parent go through a queue:
("ready", info), ("start", cell_id), ("cell", (cell_id, measured)), ("fatal", message).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import asdict

import torch

from mambapoc.bench.memory import PeakMemory, apply_limit, is_oom
from mambapoc.bench.plan import Planned
from mambapoc.bench.timing import repeat, sync
from mambapoc.errors import UserError
from mambapoc.results import Timing


def _exit_with_parent() -> None:
    # A parent killed with SIGKILL cannot stop its children; each child notices and leaves instead.
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def measure_speed(lm, prompt_ids: list[int], batch: int, new_tokens: int, cfg: dict) -> dict:
    """Prefill, time to first token and greedy decoding of `new_tokens`, repeated; keyed by the fields
    of `mambapoc.results.Cell` they fill."""
    ids = lm.as_ids(prompt_ids, batch)
    device = lm.device

    def once() -> dict[str, float]:
        sync(device)
        t0 = time.perf_counter()
        last, cache = lm.prefill(ids)
        sync(device)
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

    with torch.inference_mode():
        s = repeat(once, cfg["warmup"], cfg["repeats"], cfg["min_time_s"])
    prefill = Timing.of(s["prefill"])
    decode_s_per_tok = Timing.of(s["decode"]).p50 / new_tokens
    tokens = len(prompt_ids) * batch
    return {
        "prefill_s": prefill,
        "ttft_s": Timing.of(s["ttft"]),
        "prefill_tok_s": tokens / prefill.p50,
        "decode_ms_per_tok": decode_s_per_tok * 1000.0,
        "decode_tok_s": batch / decode_s_per_tok,
        "new_tokens": new_tokens,
        "prompt_tokens": len(prompt_ids),
    }


def run_cell(lm, cell: Planned, records: list[dict], cfg: dict, mem: PeakMemory) -> dict:
    """The measured fields of one cell (names of `mambapoc.results.Cell` fields)."""
    from mambapoc.tasks import build_instances, score

    mem.reset()
    instances = build_instances(
        cell.task.name, records, lm.tokenizer, cell.length_tokens,
        n=cfg["instances"], seed=cfg["seed"], **cell.task.options,
    )
    out = measure_speed(lm, instances[0].prompt_ids, cfg["batch_size"], cfg["new_tokens"], cfg)
    t0 = time.perf_counter()
    out["metrics"] = score(cell.task.name, lm, instances)
    out["score_s"] = time.perf_counter() - t0
    out.update(mem.read())
    out["state_bytes"] = lm.state_bytes(cell.length_tokens, cfg["batch_size"])
    return out


def main(spec: str, impl: str, cfg: dict, cells: list[Planned], dataset_dir: str, queue) -> None:
    _exit_with_parent()
    try:
        if cfg.get("threads"):
            torch.set_num_threads(cfg["threads"])
        torch.manual_seed(cfg["seed"])
        from mambapoc.ingest.dataset import load_records
        from mambapoc.models.registry import load

        lm = load(spec, device=cfg["device"], dtype=cfg["dtype"], impl=impl)
        records = load_records(dataset_dir)
        mem = PeakMemory(lm.device)
        if cfg.get("memory_limit_bytes"):
            apply_limit(lm.device, cfg["memory_limit_bytes"])
    except UserError as e:
        queue.put(("fatal", str(e)))
        return
    except Exception as e:  # noqa: BLE001 - reported to the parent as the model's failure
        queue.put(("fatal", f"loading {spec} failed: {type(e).__name__}: {e}"))
        return
    queue.put(("ready", {**asdict(lm.info), "torch_threads": torch.get_num_threads()}))
    for cell in cells:
        queue.put(("start", cell.cell_id))
        try:
            result = {"status": "ok", "error": None, **run_cell(lm, cell, records, cfg, mem)}
        except UserError as e:
            result = {"status": "error", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - every failure becomes a result cell, the sweep goes on
            status = "oom" if is_oom(e) else "error"
            result = {"status": status, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            if status == "error":
                result["traceback"] = traceback.format_exc(limit=6)
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
        queue.put(("cell", (cell.cell_id, result)))
