"""CPU gated RMSNorm in one pass over channel-last rows (see gated_norm.py): for inference only."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from .cpu_math import sigmoid
from .cpu_runtime import run_parallel, workers_for

_ROWS = 64  # rows (batch x L positions) per work item


@njit(nogil=True, fastmath=True, error_model="numpy", cache=True)
def _gated_norm(y, z, w, group_size, eps, out, item, slot):
    rows, dim = y.shape
    # The gated row goes to a local buffer: written straight into `out`, which LLVM cannot prove does not
    # overlap y and z, the loops would not vectorise.
    gated = np.empty(dim, np.float32)
    for r in range(item * _ROWS, min(rows, (item + 1) * _ROWS)):
        for c in range(dim):
            gated[c] = y[r, c] * z[r, c] * sigmoid(z[r, c])
        for g0 in range(0, dim, group_size):
            sumsq = np.float32(0.0)
            for c in range(g0, g0 + group_size):
                sumsq += gated[c] * gated[c]
            scale = np.float32(1.0) / np.sqrt(sumsq / group_size + eps)
            for c in range(g0, g0 + group_size):
                out[r, c] = gated[c] * scale * w[c]


@torch.compiler.disable  # a numba kernel on numpy views: called as is from a compiled model
def gated_rms_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, group_size: int,
                   eps: float) -> torch.Tensor:
    """y, z (..., d), weight (d,) -> (..., d) in the dtype of y promoted with weight's."""
    dim = y.shape[-1]
    rows = y.numel() // dim
    out = torch.empty(rows, dim, dtype=torch.float32)
    views = (t.detach().reshape(rows, dim).to(torch.float32).contiguous().numpy() for t in (y, z))
    items = -(-rows // _ROWS)
    run_parallel(_gated_norm, items, workers_for(items), *views, weight.detach().float().contiguous().numpy(),
                 group_size, np.float32(eps), out.numpy())
    return out.view(y.shape).to(torch.promote_types(y.dtype, weight.dtype))
