"""Prefill time of transformers' BambaForCausalLM (a Mamba-2 / attention hybrid) on its own torch code and
with its SSM mixers on our kernels (`mambapoc.models.hf_kernels.ssm_kernels`), same model, same input.

    python benchmarks/bench_hybrid_kernels.py [--length 4096] [--repeats 3] [--device cpu|cuda] [--json out.json]

The model: d_model 256, 4 layers of which one (index 2) is attention; Mamba-2 mixers of 8 heads of 64
channels, d_state 128, one group, chunks of 256; random weights (speed does not depend on them). Logits
for the last position only, as a prefill before decoding would ask. The two paths alternate, after one
untimed call each, and the median of the rounds is reported, with the ratio and the largest logit
difference between them.
"""

from __future__ import annotations

# isort: off
import mambapoc  # noqa: F401  (before torch: it sets GOMP_SPINCOUNT)
# isort: on

import argparse
import json
import statistics
import time

import torch

from mambapoc.models.hf_kernels import kernel_functions, ssm_kernels

MODEL = {"vocab_size": 50280, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
         "attn_layer_indices": [2], "num_attention_heads": 4, "num_key_value_heads": 2, "mamba_n_heads": 8,
         "mamba_d_head": 64, "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_chunk_size": 256}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from transformers import BambaConfig, BambaForCausalLM

    torch.manual_seed(0)
    model = BambaForCausalLM(BambaConfig(**MODEL)).to(args.device).eval()
    ids = torch.randint(0, MODEL["vocab_size"], (1, args.length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(args.device)

    def theirs():
        return model(ids, logits_to_keep=1, use_cache=False).logits

    def ours():
        with ssm_kernels(model):
            return model(ids, logits_to_keep=1, use_cache=False).logits

    with torch.inference_mode():
        diff = (theirs() - ours()).abs().max().item()  # also the untimed first call of each
        times = {"transformers_s": [], "ssm_kernels_s": []}
        for _ in range(args.repeats):
            for name, fn in (("transformers_s", theirs), ("ssm_kernels_s", ours)):
                sync(args.device)
                start = time.perf_counter()
                fn()
                sync(args.device)
                times[name].append(time.perf_counter() - start)
    row = {name: statistics.median(t) for name, t in times.items()}
    row.update(length=args.length, device=args.device, threads=torch.get_num_threads(), max_abs_logit_diff=diff,
               speedup=row["transformers_s"] / row["ssm_kernels_s"], functions=kernel_functions(model))
    print(f"Bamba d_model 256, 4 layers (1 attention), L={args.length}, {args.device}, "
          f"{row['threads']} threads: transformers {row['transformers_s']:.3f} s, with ssm_kernels "
          f"{row['ssm_kernels_s']:.3f} s, x{row['speedup']:.2f}; max |logit diff| {diff:.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
