"""GPU check of the bundled Mamba, as one JSON file: Triton kernel correctness at real shapes, achieved
memory bandwidth of the scan, and end-to-end prefill/decode of a mamba-130m-shaped model against
transformers' MambaForCausalLM and a pythia-160m-shaped GPT-NeoX (sdpa attention).

    bash benchmarks/gpu_check.sh [OUT.json]       # what to run on an NVIDIA machine
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --smoke --out /tmp/x.json   # tiny, on CPU

The JSON is rewritten after every section, so a run cut short still leaves what it measured.
Random weights throughout: speed and memory do not depend on them, and no download is needed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import tempfile
import time
from importlib.util import find_spec

import torch

from mambapoc import kernels
from mambapoc.models.mamba import MambaConfig, MambaLM

# Nominal HBM bandwidth, GB/s, by a substring of torch.cuda.get_device_name().
NOMINAL_GBPS = {"H200": 4800, "H100 NVL": 3900, "H100 PCIe": 2000, "H100": 3350, "GH200": 4000,
                "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "A10G": 600,
                "L4": 300}
# mamba_ssm's selective-scan test tolerances.
TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
MAMBA_130M = {"vocab_size": 50280, "hidden_size": 768, "num_hidden_layers": 24, "state_size": 16}
PYTHIA_160M = {"vocab_size": 50304, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
               "intermediate_size": 3072, "rotary_pct": 0.25, "use_parallel_residual": True}


class Timer:
    """Median seconds of a callable: CUDA events on a GPU, the wall clock otherwise."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def __call__(self, fn, repeats: int = 5, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)


def scan_inputs(batch, length, dim, n, dtype, device, seed=0):
    """Scan arguments as the model passes them: (batch, d_inner, L) views of channel-last storage."""
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device)

    def seq(channels):
        return r(batch, length, channels).to(dtype).transpose(1, 2)

    return {"u": seq(dim), "delta": (seq(dim).float() * 0.5 - 1).to(dtype),
            "A": -torch.rand(dim, n, device=device) * 4,
            "B": seq(n), "C": seq(n), "D": r(dim), "z": seq(dim), "delta_bias": r(dim) * 0.5,
            "initial_state": r(batch, dim, n)}


def max_errors(ours: torch.Tensor, ref: torch.Tensor, dtype) -> dict:
    rtol, atol = TOL[dtype]
    diff = (ours.float() - ref.float()).abs()
    ok = bool((diff <= atol + rtol * ref.float().abs()).all())
    rel = (diff / ref.float().abs().clamp_min(1e-3)).max().item()
    return {"max_abs": diff.max().item(), "max_rel": rel, "ok": ok}


def kernel_correctness(device, dim, lengths, grad_length) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for length in lengths:
            args = scan_inputs(1, length, dim, 16, dtype, device)
            y_ref, h_ref = kernels.selective_scan(**args, backend="reference")
            y, h = kernels.selective_scan(**args, backend="triton")
            rows.append({"check": "scan", "dtype": str(dtype), "d_inner": dim, "L": length,
                         "y": max_errors(y, y_ref, dtype),
                         "final_state": max_errors(h, h_ref, torch.float32)})
            print(json.dumps(rows[-1]), flush=True)
    args = scan_inputs(2, grad_length, dim, 16, torch.float32, device)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]
    grads = {}
    for backend in ("reference", "triton"):
        leaves = {k: args[k].detach().clone().requires_grad_() for k in names}
        y, h = kernels.selective_scan(**leaves, backend=backend)
        g = torch.Generator(device=device).manual_seed(1)
        (y * torch.randn(y.shape, generator=g, device=device)).sum().add_(h.sum()).backward()
        grads[backend] = {k: leaves[k].grad for k in names}
    rows.append({"check": "scan_backward", "dtype": "torch.float32", "d_inner": dim, "L": grad_length,
                 **{f"d{k}": max_errors(grads["triton"][k], grads["reference"][k], torch.float32)
                    for k in names}})
    print(json.dumps(rows[-1]), flush=True)
    args = scan_inputs(4, 1, dim, 16, torch.float32, device)
    step = {k: args[k][..., 0] for k in ("u", "delta", "B", "C", "z")}
    states = {b: args["initial_state"].clone() for b in ("reference", "triton")}
    ys = {b: kernels.selective_state_update(states[b], step["u"], step["delta"], args["A"], step["B"],
                                            step["C"], args["D"], step["z"], args["delta_bias"], backend=b)
          for b in states}
    rows.append({"check": "state_update", "y": max_errors(ys["triton"], ys["reference"], torch.float32),
                 "state": max_errors(states["triton"], states["reference"], torch.float32)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def copy_gbps(device, timer, nbytes) -> float:
    """Achievable bandwidth: a device-to-device copy reads and writes `nbytes` each."""
    src = torch.empty(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / timer(lambda: dst.copy_(src), repeats=10) / 1e9


def scan_bandwidth(device, timer, dim, shapes, nominal, copy) -> list[dict]:
    """GB/s of the forward scan. `GBps` counts the bytes any scan must move (u, delta, z, B, C read once,
    y written, states); `GBps_moved` adds what the chunked path re-reads (u, delta, B of all chunks but
    the last) and its per-chunk states, i.e. the DRAM traffic this implementation actually causes."""
    from mambapoc.kernels.triton_scan import steps_per_program

    rows = []
    n = 16
    for dtype in (torch.float32, torch.bfloat16):
        for batch, length in shapes:
            args = scan_inputs(batch, length, dim, n, dtype, device)
            esize = torch.empty((), dtype=dtype).element_size()
            nbytes = batch * length * (4 * dim + 2 * n) * esize + 2 * batch * dim * n * 4
            chunks = -(-length // steps_per_program(batch, dim, length, torch.device(device)))
            reread = batch * (length - length // chunks) * (2 * dim + n) * esize if chunks > 1 else 0
            moved = nbytes + reread + (3 * batch * chunks * dim * n * 4 if chunks > 1 else 0)
            with torch.inference_mode():
                seconds = timer(lambda a=args: kernels.selective_scan(**a, backend="triton"),
                                repeats=5 if length > 8192 else 20)
            gbps = nbytes / seconds / 1e9
            rows.append({"dtype": str(dtype), "batch": batch, "L": length, "d_inner": dim, "chunks": chunks,
                         "ms": 1000 * seconds, "GBps": gbps, "GBps_moved": moved / seconds / 1e9,
                         "of_nominal": gbps / nominal if nominal else None, "of_copy": gbps / copy,
                         "moved_of_nominal": moved / seconds / 1e9 / nominal if nominal else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def build_models(device, sizes: dict):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, MambaForCausalLM

    torch.manual_seed(0)
    ours = MambaLM(MambaConfig(**sizes["mamba"])).to(device, torch.bfloat16).eval()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        hf_mamba = MambaForCausalLM.from_pretrained(d, dtype=torch.bfloat16).to(device).eval()
    # Re-load ours from the same directory format so A_log and D are fp32 as in a real checkpoint.
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ours = MambaLM.from_pretrained(d, device=device, dtype=torch.bfloat16).eval()
    neox = GPTNeoXConfig(**sizes["pythia"], max_position_embeddings=2 * max(sizes["lengths"]))
    pythia = GPTNeoXForCausalLM._from_config(neox, attn_implementation="sdpa", dtype=torch.bfloat16)
    return {"ours_mamba": ours, "hf_mamba": hf_mamba, "pythia_sdpa": pythia.to(device).eval()}


def run_model(name, model, ids, state=None):
    """Prefill or extend `ids` after `state`; returns the new state (our MambaState or an HF cache)."""
    if name == "ours_mamba":
        return model(ids, state=state, logits_to_keep=1).state
    # transformers renamed `past_key_values` to `cache`; older releases only know the former.
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(ids, use_cache=True, logits_to_keep=1, **{key: state})
    return getattr(out, "cache", None) or out.past_key_values


def end_to_end(device, timer, sizes, hf_mamba_max) -> list[dict]:
    models = build_models(device, sizes)
    rows = []
    for name, model in models.items():
        for length in sizes["lengths"]:
            if name == "hf_mamba" and length > hf_mamba_max:
                continue
            vocab = min(sizes["mamba"]["vocab_size"], sizes["pythia"]["vocab_size"])
            ids = torch.randint(0, vocab, (1, length), device=device)
            row = {"model": name, "L": length}
            try:
                with torch.inference_mode():
                    if device == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated() if device == "cuda" else 0
                    slow = length > 8192 or name == "hf_mamba"  # seconds per call: time it once
                    row["prefill_ms"] = 1000 * timer(lambda m=model, i=ids, n=name: run_model(n, m, i),
                                                     repeats=1 if slow else 3)
                    if device == "cuda":
                        row["prefill_peak_MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                    if length in (sizes["lengths"][0], sizes["lengths"][-1]):
                        state = run_model(name, model, ids)
                        token = ids[:, :1]
                        holder = {"state": state}

                        def step(m=model, n=name, h=holder, t=token):
                            h["state"] = run_model(n, m, t, h["state"])

                        row["decode_ms_per_token"] = 1000 * timer(step, repeats=50, warmup=5)
                        del state, holder
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (with TRITON_INTERPRET=1)")
    p.add_argument("--hf-mamba-max-len", type=int, default=8192,
                   help="longest prefill for transformers' Mamba (without mamba_ssm it loops over L "
                   "in Python)")
    args = p.parse_args()
    device = "cpu" if args.smoke else "cuda"
    result: dict = {"env": {"python": platform.python_version(), "torch": torch.__version__,
                            "triton": kernels.triton_version(),
                            "mamba_ssm_installed": find_spec("mamba_ssm") is not None}}

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    if not args.smoke and not torch.cuda.is_available():
        result["error"] = "no CUDA device visible to torch"
        save()
        raise SystemExit(result["error"])
    if args.smoke:
        dim, lengths, grad_len, shapes, copy_bytes = 40, [70], 80, [(1, 70)], 2**20
        sizes = {"mamba": {**MAMBA_130M, "vocab_size": 500, "hidden_size": 32, "num_hidden_layers": 2},
                 "pythia": {**PYTHIA_160M, "vocab_size": 500, "hidden_size": 32, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "intermediate_size": 64}, "lengths": [16, 40]}
        name = "cpu (smoke test)"
    else:
        dim, lengths, grad_len, copy_bytes = 1536, [1024, 8192, 65536], 2048, 2**30
        shapes = [(1, 1024), (1, 8192), (1, 65536), (8, 8192)]
        sizes = {"mamba": MAMBA_130M, "pythia": PYTHIA_160M, "lengths": [1024, 8192, 65536]}
        name = torch.cuda.get_device_name()
    nominal = next((v for k, v in NOMINAL_GBPS.items() if k in name), None)
    timer = Timer(device)
    result["device"] = {"name": name, "nominal_GBps": nominal}
    result["kernel_correctness"] = kernel_correctness(device, dim, lengths, grad_len)
    save()
    copy = copy_gbps(device, timer, copy_bytes)
    result["device"]["copy_GBps"] = copy
    result["scan_bandwidth"] = scan_bandwidth(device, timer, dim, shapes, nominal, copy)
    save()
    result["end_to_end_bf16"] = end_to_end(device, timer, sizes, args.hf_mamba_max_len)
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
