"""Running numba kernels on torch tensors: fp32 numpy views, and a pool of worker threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous fp32 numpy view (or copy, if t is not already one) of a CPU tensor."""
    return t.detach().to(torch.float32).contiguous().numpy()


def workers_for(items: int) -> int:
    """Threads worth using for `items` independent work items: at most torch's thread count."""
    return max(1, min(torch.get_num_threads(), items))


def run_parallel(kernel, items: int, workers: int, *args) -> None:
    """kernel(*args, item, slot) for every item in range(items), on `workers` threads (this one
    included). `slot` (0 .. workers - 1) says which thread runs the call, for per-thread partial sums;
    kernels must be compiled with nogil=True.

    Plain threads rather than numba's prange: numba's OpenMP runtime and torch's are separate, and
    their idle threads spin-wait, so alternating torch ops with parallel numba kernels makes each steal
    the cores the other is working on. These threads sleep when idle, and take the next item whenever
    they finish one, so a thread slowed by another process (or by torch's spinning workers) simply
    does fewer items."""
    global _POOL, _POOL_SIZE
    if workers - 1 > _POOL_SIZE:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(workers - 1, thread_name_prefix="mambapoc-kernels")
        _POOL_SIZE = workers - 1
    pending = iter(range(items))  # shared; next() on it is atomic under the GIL

    def work(slot: int) -> None:
        for item in pending:
            kernel(*args, item, slot)

    futures = [_POOL.submit(work, slot) for slot in range(1, workers)]
    work(0)
    for f in futures:
        f.result()
