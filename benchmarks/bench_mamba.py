"""Speed and memory of the bundled Mamba against transformers' MambaForCausalLM on the same weights.

    python benchmarks/bench_mamba.py [--device cpu|cuda] [--lengths 1024,8192,65536] [--json out.json]

Prints, per length: forward (prefill) time of each of our scan backends and of transformers, decode
ms/token after a 1k and a 64k context, peak prefill memory, and the time of one training step of a tiny
model with the fused scan against the reference scan. Both models get the same weights, the same
threads, and compute logits for the last position only (at 64k x 50k vocab, full fp32 logits are 13 GB).

CPU peak memory is the growth of the process's peak RSS (VmHWM, reset just before) during the prefill,
in a fresh subprocess per length (`--prefill-memory L` is that subprocess) whose glibc malloc maps
every large block separately, so RSS tracks live tensors rather than heap reuse; on CUDA it is
max_memory_allocated.

The `mambapoc` package sets GOMP_SPINCOUNT to 10000 unless it is already set (see its __init__), so it
is imported before torch here; the value is printed with the figures.
"""

from __future__ import annotations

# isort: off
import mambapoc  # noqa: F401  (before torch: it sets GOMP_SPINCOUNT)
# isort: on

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import torch

from mambapoc import kernels, resources
from mambapoc.models.mamba import MambaConfig, MambaLM

MODEL = {"vocab_size": 50280, "hidden_size": 256, "num_hidden_layers": 4, "state_size": 16}
# The shape of the bundled mamba-tiny (its config.json, as recipes/bundled-tiny.yaml makes it), timed at
# batch 8 x 512 tokens; read from the shipped checkpoint so that the two cannot drift apart.
TRAIN_MODEL = {k: v for k, v in json.loads((resources.models_dir() / "mamba-tiny" / "config.json").read_text()).items()
               if k in ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand", "conv_kernel")}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, device: str, repeats: int) -> dict[str, float]:
    """Best wall time in seconds of each callable over `repeats` rounds, after one untimed warm-up call.
    The rounds interleave the callables, so that load from other processes on a shared machine falls on
    all of them alike, and the best rather than the median is kept: interference only ever adds time."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def ids_of(length: int, device: str, vocab: int = MODEL["vocab_size"], batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(length)
    return torch.randint(0, vocab, (batch, length), generator=g).to(device)


def build(device: str):
    """Our model and transformers' MambaForCausalLM loaded from the directory ours saved."""
    from transformers import MambaForCausalLM

    torch.manual_seed(0)
    ours = MambaLM(MambaConfig(**MODEL)).eval().to(device)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        hf = MambaForCausalLM.from_pretrained(d).eval().to(device)
    return ours, hf


@torch.inference_mode()
def forward_times(ours, hf, lengths, device, backends, reference_max, hf_max,
                  vocab: int = MODEL["vocab_size"]) -> list[dict]:
    rows = []
    for length in lengths:
        ids = ids_of(length, device, vocab)
        fns = {f"ours_{b}_s": partial(ours, ids, backend=b, logits_to_keep=1)
               for b in backends if b != "reference" or length <= reference_max}
        if length <= hf_max:
            fns["hf_s"] = partial(hf, ids, logits_to_keep=1, use_cache=False)
        row = {"length": length, **timed(fns, device, repeats=3 if length <= 8192 else 1)}
        if "hf_s" in row:
            row["speedup_vs_hf"] = row["hf_s"] / row[f"ours_{backends[0]}_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


@torch.inference_mode()
def decode_ms_per_token(model, context: int, device: str, tokens: int = 200) -> float:
    state = model(ids_of(context, device), logits_to_keep=1).state
    token = ids_of(1, device)
    times = []
    for _ in range(tokens):
        sync(device)
        start = time.perf_counter()
        state = model(token, state=state).state
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[10:])


@torch.inference_mode()
def hf_decode_ms_per_token(hf, context: int, device: str, tokens: int = 100) -> float:
    cache = hf(ids_of(context, device), logits_to_keep=1, use_cache=True).cache
    token = ids_of(1, device)
    times = []
    for _ in range(tokens):
        sync(device)
        start = time.perf_counter()
        cache = hf(token, cache=cache, use_cache=True).cache
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[10:])


def _rss_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


@torch.inference_mode()
def model_prefill_peak_mb(model, ids: torch.Tensor, device: str) -> float:
    """Peak memory `model` adds while prefilling `ids` (on CPU: run it in a fresh process)."""
    model(ids[:, :16], logits_to_keep=1)  # loads the kernels, so only the prefill itself is measured
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(ids, logits_to_keep=1)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = _rss_kib("VmRSS")
    model(ids, logits_to_keep=1)
    return (_rss_kib("VmHWM") - base) / 1024


def prefill_peak_mb(length: int, device: str) -> float:
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(**MODEL)).eval().to(device)
    return model_prefill_peak_mb(model, ids_of(length, device), device)


def cpu_prefill_memory(script: str, lengths) -> dict[int, float]:
    """`script --prefill-memory N` per length, each in a fresh process so one's peak cannot hide another's."""
    out = {}
    for n in lengths:
        # Every allocation over 64 KiB gets its own mapping, returned on free, so RSS follows what is live.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        run = subprocess.run([sys.executable, script, "--prefill-memory", str(n)], capture_output=True,
                             text=True, check=True, env=env, timeout=1800)
        out[n] = float(run.stdout.strip().splitlines()[-1])
    return out


def prefill_memory(lengths, device) -> dict[int, float]:
    if device == "cuda":
        return {n: prefill_peak_mb(n, device) for n in lengths}
    return cpu_prefill_memory(__file__, lengths)


def train_step_seconds(model, vocab: int, device: str, backend: str, batch: int, length: int = 512) -> float:
    """One AdamW step (forward, backward, update) of `model` on next-token loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = ids_of(length + 1, device, vocab=vocab, batch=batch)

    def step():
        logits = model(ids[:, :-1], backend=backend).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed({"step": step}, device, repeats=3)["step"]


def train_model(device: str) -> MambaLM:
    torch.manual_seed(0)
    return MambaLM(MambaConfig(**TRAIN_MODEL)).to(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lengths", default="1024,8192,65536")
    p.add_argument("--reference-max-len", type=int, default=1024, help="longest L for the reference backend")
    p.add_argument("--hf-max-len", type=int, default=8192, help="longest L for transformers (its CPU path "
                   "materialises (d_inner, L, N) fp32 tensors: ~2 GB each per layer at 64k)")
    p.add_argument("--threads", type=int, help="threads for torch and our CPU kernels (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--prefill-memory", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prefill_memory:
        print(prefill_peak_mb(args.prefill_memory, args.device))
        return
    device = args.device
    lengths = [int(x) for x in args.lengths.split(",")]
    fused = kernels.default_backend(device)
    results = {"device": device, "torch_threads": torch.get_num_threads(), "model": MODEL,
               "GOMP_SPINCOUNT": os.environ["GOMP_SPINCOUNT"],
               "backends": [fused, "reference"]}
    ours, hf = build(device)
    results["forward"] = forward_times(ours, hf, lengths, device, [fused, "reference"],
                                       args.reference_max_len, args.hf_max_len)
    contexts = [n for n in (1024, 65536) if n <= max(lengths)]
    results["decode_ms_per_token"] = {n: decode_ms_per_token(ours, n, device) for n in contexts}
    decode = results["decode_ms_per_token"]
    results["decode_ratio_64k_to_1k"] = decode[65536] / decode[1024] if 65536 in decode else None
    results["hf_decode_ms_per_token"] = {1024: hf_decode_ms_per_token(hf, 1024, device)}
    print(json.dumps({k: results[k] for k in ("decode_ms_per_token", "decode_ratio_64k_to_1k",
                                              "hf_decode_ms_per_token")}), flush=True)
    del ours, hf
    results["prefill_peak_mb"] = prefill_memory(lengths, device)
    print(json.dumps({"prefill_peak_mb": results["prefill_peak_mb"]}), flush=True)
    results["train_step_s"] = {b: train_step_seconds(train_model(device), TRAIN_MODEL["vocab_size"], device, b, batch=8)
                              for b in (fused, "reference")}
    results["train"] = {"model": TRAIN_MODEL, "batch": 8, "length": 512}
    print(json.dumps({"train_step_s": results["train_step_s"]}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
