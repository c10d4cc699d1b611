"""CPU depthwise causal convolution + SiLU in one pass over channel-last (batch, L, d_inner) rows.

As torch ops the same convolution is `conv_kernel` shifted multiply-adds, a bias add and a SiLU: about
seven passes over the activations, which at d_model 256 cost about as much as the scan itself. Used for
inference only; with gradients the torch version in reference.py runs, and autograd differentiates it.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from .cpu_math import sigmoid
from .cpu_runtime import as_numpy, run_parallel, workers_for

_ROWS = 256  # time steps per work item


@njit(nogil=True, fastmath=True, error_model="numpy", cache=True)
def _conv_silu(x, state, w, bias, out, item, slot):
    bsz, length, dim = x.shape
    k = w.shape[0]
    nblk = (length + _ROWS - 1) // _ROWS
    b = item // nblk
    t0 = (item - b * nblk) * _ROWS
    for t in range(t0, min(length, t0 + _ROWS)):
        orow = out[b, t]
        orow[:] = bias
        for j in range(k):
            i = t + j - (k - 1)
            src = x[b, i] if i >= 0 else state[b, k - 1 + i]
            for c in range(dim):
                orow[c] += w[j, c] * src[c]
        for c in range(dim):
            orow[c] *= sigmoid(orow[c])


@torch.compiler.disable  # a numba kernel on numpy views: called as is from a compiled decode step
def causal_conv1d_silu(x, weight, bias, state):
    """silu(depthwise causal conv) of x (batch, L, d_inner) after `state` (batch, k - 1, d_inner), with
    weight (d_inner, k). Returns the output in x's dtype and the new state."""
    bsz, length, dim = x.shape
    k = weight.shape[1]
    out = torch.empty(bsz, length, dim, dtype=torch.float32)
    b = np.zeros(dim, np.float32) if bias is None else as_numpy(bias)
    items = bsz * -(-length // _ROWS)
    run_parallel(_conv_silu, items, workers_for(items), as_numpy(x), as_numpy(state), as_numpy(weight.t()), b,
                 out.numpy())
    tail = x[:, length - (k - 1) :] if length >= k - 1 else torch.cat([state[:, length:], x], dim=1)
    return out.to(x.dtype), tail.to(state.dtype).clone()
