"""Speed and memory of the bundled Mamba-2 against transformers' Mamba2ForCausalLM on the same weights.

    python benchmarks/bench_mamba2.py [--lengths 1024,8192,65536] [--json out.json]       # CPU
    python benchmarks/bench_mamba2.py --device cuda [--json out.json]                     # NVIDIA GPU
    TRITON_INTERPRET=1 python benchmarks/bench_mamba2.py --device cuda --smoke            # tiny, on CPU

CPU: a Mamba-2 with d_model 256, 4 layers, 8 heads of 64 channels, d_state 128, one group, vocab 50280;
prefill time per length of our `cpu` backend, our `reference` backend (1k only) and transformers' torch
path (up to 8k), all computing logits for the last position only; decode ms/token after a 1k and a 64k
context; the peak memory a prefill adds (a fresh subprocess per length, as bench_mamba.py measures it);
and one AdamW step of a small-vocabulary variant through the fused CPU backward and the reference one.

GPU (`--device cuda`): the Triton SSD kernels at mamba2-2.7b's mixer shape (d_model 2560: 80 heads of 64
channels, d_state 128, one group): correctness against the chunked torch reference (fp32 and bf16), time
and achieved bandwidth of the scan at L = 64k in bf16 against the card's nominal bandwidth and a measured
copy, the decoding step, and an 8-layer d_model 2560 model end to end in bf16 (prefill time and peak
memory at 1k/8k/64k, decode ms/token at 1k and 64k; transformers up to 8k). `--smoke` runs that section
at tiny shapes, e.g. on CPU under TRITON_INTERPRET=1, to check the script itself.

Timing helpers are bench_mamba.py's and gpu_check.py's, imported from beside this file.
"""

from __future__ import annotations

# isort: off
import mambapoc  # noqa: F401  (before torch: it sets GOMP_SPINCOUNT)
# isort: on

import argparse
import json
import os
import tempfile
from functools import partial

import torch
from bench_mamba import (
    cpu_prefill_memory,
    decode_ms_per_token,
    forward_times,
    hf_decode_ms_per_token,
    ids_of,
    model_prefill_peak_mb,
    train_step_seconds,
)
from gpu_check import NOMINAL_GBPS, Timer, copy_gbps, max_errors

from mambapoc import kernels
from mambapoc.models.mamba2 import Mamba2Config, Mamba2LM

MODEL = {"vocab_size": 50280, "hidden_size": 256, "num_hidden_layers": 4, "num_heads": 8, "head_dim": 64,
         "state_size": 128, "n_groups": 1}
TRAIN_MODEL = {**MODEL, "vocab_size": 512}
GPU_MODEL = {"vocab_size": 50280, "hidden_size": 2560, "num_hidden_layers": 8, "num_heads": 80,
             "head_dim": 64, "state_size": 128, "n_groups": 1}
SMOKE_MODEL = {"vocab_size": 50280, "hidden_size": 32, "num_hidden_layers": 2, "num_heads": 4, "head_dim": 16,
               "state_size": 16, "n_groups": 1}


def build(device: str, sizes: dict, dtype: torch.dtype = torch.float32):
    """Our model and transformers' Mamba2ForCausalLM, both loaded from the directory ours saved (so A_log,
    D and dt_bias are fp32 in ours, as from a real checkpoint)."""
    from transformers import Mamba2ForCausalLM

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        Mamba2LM(Mamba2Config(**sizes)).save_pretrained(d)
        ours = Mamba2LM.from_pretrained(d, device=device, dtype=dtype).eval()
        hf = Mamba2ForCausalLM.from_pretrained(d, dtype=dtype).to(device).eval()
    return ours, hf


def prefill_peak_mb(length: int, device: str, sizes: dict, dtype: torch.dtype) -> float:
    torch.manual_seed(0)
    model = Mamba2LM(Mamba2Config(**sizes)).to(device, dtype).eval()
    return model_prefill_peak_mb(model, ids_of(length, device, sizes["vocab_size"]), device)


def train_model(device: str) -> Mamba2LM:
    torch.manual_seed(0)
    return Mamba2LM(Mamba2Config(**TRAIN_MODEL)).to(device)


def cpu_benchmark(args) -> dict:
    lengths = [int(x) for x in args.lengths.split(",")]
    results = {"device": "cpu", "torch_threads": torch.get_num_threads(), "model": MODEL,
               "GOMP_SPINCOUNT": os.environ["GOMP_SPINCOUNT"], "backends": ["cpu", "reference"]}
    ours, hf = build("cpu", MODEL)
    results["forward"] = forward_times(ours, hf, lengths, "cpu", ["cpu", "reference"], args.reference_max_len,
                                       args.hf_max_len, MODEL["vocab_size"])
    contexts = [n for n in (1024, 65536) if n <= max(lengths)]
    decode = {n: decode_ms_per_token(ours, n, "cpu") for n in contexts}
    results["decode_ms_per_token"] = decode
    results["decode_ratio_64k_to_1k"] = decode[65536] / decode[1024] if 65536 in decode else None
    results["hf_decode_ms_per_token"] = {1024: hf_decode_ms_per_token(hf, 1024, "cpu")}
    print(json.dumps({k: results[k] for k in ("decode_ms_per_token", "decode_ratio_64k_to_1k",
                                              "hf_decode_ms_per_token")}), flush=True)
    del ours, hf
    results["prefill_peak_mb"] = cpu_prefill_memory(__file__, lengths)
    print(json.dumps({"prefill_peak_mb": results["prefill_peak_mb"]}), flush=True)
    results["train_step_s"] = {b: train_step_seconds(train_model("cpu"), TRAIN_MODEL["vocab_size"], "cpu", b, batch=4)
                              for b in ("cpu", "reference")}
    results["train"] = {"model": TRAIN_MODEL, "batch": 4, "length": 512}
    print(json.dumps({"train_step_s": results["train_step_s"]}), flush=True)
    return results


def ssd_inputs(batch, length, heads, headdim, n, dtype, device, seed=0):
    """Scan arguments as the model passes them: x, B, C slices of one (batch, L, conv_dim) tensor."""
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device)

    xBC = r(batch, length, heads * headdim + 2 * n).to(dtype)
    x, B, C = torch.split(xBC, [heads * headdim, n, n], dim=-1)
    return {"x": x.unflatten(-1, (heads, headdim)), "dt": (r(batch, length, heads) * 0.5 - 1).to(dtype),
            "A": -torch.rand(heads, device=device) * 4 - 0.1, "B": B.unflatten(-1, (1, n)),
            "C": C.unflatten(-1, (1, n)), "D": r(heads), "dt_bias": r(heads) * 0.5,
            "initial_state": r(batch, heads, headdim, n)}


def ssd_correctness(device, heads, length) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        args = ssd_inputs(1, length, heads, 64, 128, dtype, device)
        with torch.inference_mode():
            y_ref, h_ref = kernels.ssd_scan(**args, backend="reference")
            y, h = kernels.ssd_scan(**args, backend="triton")
        rows.append({"check": "ssd_scan", "dtype": str(dtype), "nheads": heads, "L": length,
                     "y": max_errors(y, y_ref, dtype), "final_state": max_errors(h, h_ref, torch.float32)})
        print(json.dumps(rows[-1]), flush=True)
    args = ssd_inputs(4, 1, heads, 64, 128, torch.float32, device)
    step = {k: args[k][:, 0] for k in ("x", "dt", "B", "C")}
    states = {b: args["initial_state"].clone() for b in ("reference", "triton")}
    ys = {b: kernels.ssd_state_update(states[b], step["x"], step["dt"], args["A"], step["B"], step["C"],
                                      args["D"], None, args["dt_bias"], backend=b) for b in states}
    rows.append({"check": "ssd_state_update", "y": max_errors(ys["triton"], ys["reference"], torch.float32),
                 "state": max_errors(states["triton"], states["reference"], torch.float32)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def ssd_bandwidth(device, timer, heads, length, nominal, copy) -> dict:
    """GB/s of the bf16 forward scan at batch 1, counting the bytes any scan must move: x, dt, B, C read
    once, y written, the initial and final states; `GBps_moved` adds the per-chunk fp32 states the
    chunked algorithm writes twice and reads twice (chunk state, state passing, chunk scan)."""
    args = ssd_inputs(1, length, heads, 64, 128, torch.bfloat16, device)
    state = heads * 64 * 128 * 4
    nbytes = length * (2 * heads * 64 + heads + 2 * 128) * 2 + 2 * state
    chunks = -(-length // 256)
    with torch.inference_mode():
        seconds = timer(lambda: kernels.ssd_scan(**args, backend="triton"), repeats=10)
    gbps = nbytes / seconds / 1e9
    row = {"dtype": "bfloat16", "batch": 1, "L": length, "nheads": heads, "headdim": 64, "d_state": 128,
           "ms": 1000 * seconds, "GBps": gbps, "GBps_moved": (nbytes + 4 * chunks * state) / seconds / 1e9,
           "of_nominal": gbps / nominal if nominal else None, "of_copy": gbps / copy}
    print(json.dumps(row), flush=True)
    return row


def gpu_end_to_end(device, timer, sizes, lengths, hf_max) -> list[dict]:
    ours, hf = build(device, sizes, torch.bfloat16)
    rows = []
    for length in lengths:
        ids = ids_of(length, device, sizes["vocab_size"])
        row = {"L": length, "ours_ms": 1000 * timer(partial(ours, ids, logits_to_keep=1), repeats=3)}
        if device == "cuda":
            row["ours_peak_mb"] = prefill_peak_mb(length, device, sizes, torch.bfloat16)
        if length <= hf_max:
            row["hf_ms"] = 1000 * timer(partial(hf, ids, logits_to_keep=1, use_cache=False), repeats=3)
            row["speedup_vs_hf"] = row["hf_ms"] / row["ours_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    decode = {n: decode_ms_per_token(ours, n, device, tokens=50) for n in (lengths[0], lengths[-1])}
    ratio = decode[lengths[-1]] / decode[lengths[0]]
    rows.append({"decode_ms_per_token": decode, "ratio_long_to_short": ratio})
    print(json.dumps(rows[-1]), flush=True)
    return rows


@torch.inference_mode()
def gpu_benchmark(args) -> dict:
    device = "cpu" if args.smoke else "cuda"
    timer = Timer(device)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)"
    nominal = next((v for k, v in NOMINAL_GBPS.items() if k in name), None)
    heads, length = (4, 300) if args.smoke else (GPU_MODEL["num_heads"], 65536)
    copy = copy_gbps(device, timer, 2**20 if args.smoke else 2**30)
    results = {"device": name, "nominal_GBps": nominal, "copy_GBps": copy}
    results["correctness"] = ssd_correctness(device, heads, 200 if args.smoke else 4096)
    results["ssd_bandwidth"] = ssd_bandwidth(device, timer, heads, length, nominal, copy)
    sizes = SMOKE_MODEL if args.smoke else GPU_MODEL
    lengths = [64, 256] if args.smoke else [1024, 8192, 65536]
    results["end_to_end_bf16"] = gpu_end_to_end(device, timer, sizes, lengths, args.hf_max_len)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lengths", default="1024,8192,65536", help="CPU prefill lengths")
    p.add_argument("--reference-max-len", type=int, default=1024, help="longest L for the reference backend")
    p.add_argument("--hf-max-len", type=int, default=8192, help="longest L for transformers' torch path")
    p.add_argument("--threads", type=int, help="threads for torch and our CPU kernels (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="the GPU section at tiny shapes, on CPU tensors")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--prefill-memory", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prefill_memory:
        print(prefill_peak_mb(args.prefill_memory, "cpu", MODEL, torch.float32))
        return
    results = gpu_benchmark(args) if args.device == "cuda" else cpu_benchmark(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
