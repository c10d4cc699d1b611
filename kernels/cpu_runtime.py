"""Running numba kernels on torch tensors: fp32 numpy views, and a pool of worker threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_POOL: ThreadPoolExecutor | None = None


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous fp32 numpy view (or copy, if t is not already one) of a CPU tensor."""
    return t.detach().to(torch.float32).contiguous().numpy()


def workers_for(items: int) -> int:
    """Threads worth using for `items` independent work items: at most torch's thread count."""
    return max(1, min(torch.get_num_threads(), items))


def run_parallel(kernel, workers: int, *args) -> None:
    """kernel(*args, w, workers) for w in range(workers), on that many threads (this one included);
    kernel must be compiled with nogil=True.

    Plain threads rather than numba's prange: numba's OpenMP pool and torch's are separate runtimes
    whose idle threads spin-wait, so alternating between torch ops and parallel numba kernels makes
    each pool steal the cores the other is working on. These threads sleep when idle."""
    global _POOL
    if workers > 1 and (_POOL is None or _POOL._max_workers < workers - 1):
        _POOL = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="mambapoc-kernels")
    futures = [_POOL.submit(kernel, *args, w, workers) for w in range(1, workers)]
    kernel(*args, 0, workers)
    for f in futures:
        f.result()
