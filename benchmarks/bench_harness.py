"""Overhead of the compare harness against a bare timing loop around the same forward call.

    python benchmarks/bench_harness.py [--model SPEC] [--length 2048] [--repeats 20]

Both time the prefill of the same prompt with the same model in this process; the harness goes
through the model adapter and `measure_speed` (warmup, repeat loop, synchronisation, decode), the
bare loop calls the model directly. Prints p50 of each and the overhead in percent (target ≤ 5 %).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mambapoc.bench.worker import measure_speed
from mambapoc.models.registry import load


def bare_prefill(model, ids: torch.Tensor, repeats: int, warmup: int) -> float:
    samples = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model spec (repeatable)")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    specs = args.model or ["bundled:mamba-tiny", "bundled:transformer-tiny"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, prompt {args.length} tokens")
    print(f"{'model':28} {'bare p50 ms':>12} {'harness p50 ms':>15} {'overhead':>9}")
    for spec in specs:
        lm = load(spec)
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, len(lm.tokenizer), (args.length,), generator=g).tolist()
        ids = lm.as_ids(prompt)
        # Interleave the two so that drifts of the machine (clock, other load) hit both alike.
        bare, harness = [], []
        for _ in range(3):
            bare.append(bare_prefill(lm.model, ids, args.repeats, args.warmup))
            cfg = {"warmup": args.warmup, "repeats": args.repeats, "min_time_s": 0.0}
            harness.append(measure_speed(lm, prompt, 1, 1, cfg)["prefill_s"]["p50"])
        b, h = statistics.median(bare), statistics.median(harness)
        print(f"{spec:28} {b * 1000:12.2f} {h * 1000:15.2f} {100 * (h - b) / b:8.1f}%")


if __name__ == "__main__":
    main()
