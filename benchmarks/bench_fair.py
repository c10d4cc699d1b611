"""How much of the Mamba/Transformer gap was the method: the old inference paths against the equal ones.

    python benchmarks/bench_fair.py [--lengths 4096,16384] [--new-tokens 16] [--repeats 3] [--rounds 2]

- old: before `--prefill-chunk` and the static cache. Mamba read the prompt in 2048-token pieces while
  the Transformer read it whole, and the Transformer decoded with transformers' dynamic cache, which
  copies the whole cache at every step.
- whole (compare's default): both read the prompt whole; the Transformer decodes from a static cache
  allocated once for the prompt and the new tokens.
- chunked (`--prefill-chunk 2048`): both read 2048-token pieces, the Transformer through its static cache.

All models of all paths are timed in this process, the paths alternating within each round so that the
machine's drift hits them alike; printed are the median prefill and decode times, peak tensor memory,
and the Transformer/Mamba ratios.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from mambapoc.bench.memory import tensor_peak
from mambapoc.bench.worker import serve, warm_up
from mambapoc.models.registry import load

PATHS = {
    "old": {"mamba": 2048, "transformer": (0, "dynamic")},
    "whole": {"mamba": 0, "transformer": (0, "static")},
    "chunked": {"mamba": 2048, "transformer": (2048, "static")},
}


def configure(lm, path: str) -> None:
    setting = PATHS[path][lm.info.family]
    if lm.info.family == "transformer":
        lm.prefill_chunk, lm.kv_cache = setting
    else:
        lm.prefill_chunk = setting


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="4096,16384")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    models = {lm.info.family: lm for lm in (load("bundled:mamba-tiny"), load("bundled:transformer-tiny"))}
    for lm in models.values():
        warm_up(lm, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.new_tokens} new tokens, "
          f"{args.rounds} rounds x {args.repeats} repeats")
    times = {}  # (path, family, length) -> {"prefill": [...], "decode": [...]}
    memory = {}
    with torch.inference_mode():
        for n in lengths:
            for _ in range(args.rounds):
                for path in PATHS:
                    for family, lm in models.items():
                        configure(lm, path)
                        ids = lm.as_ids(torch.randint(0, len(lm.tokenizer), (n,)).tolist())
                        serve(lm, ids, args.new_tokens)  # this path's shapes, warm
                        got = times.setdefault((path, family, n), {"prefill": [], "decode": []})
                        for _ in range(args.repeats):
                            run = serve(lm, ids, args.new_tokens)
                            got["prefill"].append(run["prefill"])
                            got["decode"].append(run["decode"] / args.new_tokens)
                        memory[(path, family, n)] = tensor_peak(lambda lm=lm, ids=ids: serve(lm, ids, args.new_tokens))
    print(f"{'length':>6} {'path':>7} | {'prefill ms M / T':>17} {'ratio':>6} | {'decode ms/tok M / T':>20} "
          f"{'ratio':>6} | {'peak MiB M / T':>15} {'ratio':>6}")
    for n in lengths:
        for path in PATHS:
            m, t = times[(path, "mamba", n)], times[(path, "transformer", n)]
            mp, tp = (1000 * statistics.median(x["prefill"]) for x in (m, t))
            md, td = (1000 * statistics.median(x["decode"]) for x in (m, t))
            mm, tm = (memory[(path, f, n)] / 2**20 for f in ("mamba", "transformer"))
            print(f"{n:>6} {path:>7} | {mp:8.0f} / {tp:6.0f} {tp / mp:6.2f} | {md:9.2f} / {td:8.2f} {td / md:6.2f} | "
                  f"{mm:6.1f} / {tm:6.1f} {tm / mm:6.2f}")


if __name__ == "__main__":
    main()
