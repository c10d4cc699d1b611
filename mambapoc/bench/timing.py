"""Timers that a benchmarking engineer would sign: warmup, then repeat until both a minimum count and
a minimum duration are reached, with CUDA synchronised around every measured region."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def repeat(
    run_once: Callable[[], dict[str, float]],
    warmup: int,
    min_repeats: int,
    min_time_s: float,
    max_repeats: int = 1000,
) -> dict[str, list[float]]:
    """Call `run_once` (which returns named durations) and collect the samples of each name."""
    for _ in range(warmup):
        run_once()
    samples: dict[str, list[float]] = {}
    start = time.perf_counter()
    n = 0
    while n < min_repeats or (time.perf_counter() - start < min_time_s and n < max_repeats):
        for k, v in run_once().items():
            samples.setdefault(k, []).append(v)
        n += 1
    return samples
