"""CPU selective scan: fused numba loops over a channel-last layout.

Work is split into (batch, block of `_BLOCK` channels) items, spread over threads (see
cpu_runtime.py). An item walks the sequence keeping its (N, _BLOCK) fp32 state in a small local array
that stays in L1; the innermost loop runs over the block's channels, so it compiles to SIMD code (see
cpu_math.py for the exp). Nothing of size (batch, L, d_inner, N) is ever materialised.

All kernels compile with error_model="numpy": under numba's default every float division carries a
zero check, and that branch keeps LLVM from vectorising the loop.

Inputs are staged `_TILE` time steps at a time into small local tiles before the recurrence runs over
them: reading one step's channels at a time from a (batch, L, d_inner) tensor is a strided walk whose
cache misses would otherwise sit on the critical path, and the staged softplus/sigmoid vectorise too.

The backward pass is a reverse scan. It needs every intermediate state in reverse order, so it first
re-runs the forward recurrence keeping a checkpoint at every tile boundary, then, tile by tile from the
end, recomputes that tile's states from its checkpoint and walks them backwards. Scratch memory is
O(L / _TILE + _TILE) states per item, independent of batch and d_inner.

All tensors here are channel-last: u, delta, z, y (batch, L, d_inner); B, C (batch, L, N).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from .cpu_math import LOG2E, exp2, sigmoid, softplus
from .cpu_runtime import as_numpy, run_parallel, workers_for

_BLOCK = 64  # channels per work item: the SIMD loop's length
_TILE = 64  # time steps staged at once; also the backward's checkpoint interval
_F32 = np.float32


@njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _stage_dt(delta, u, bias, b, t0, tl, d0, cb, use_softplus, dt, dtu, ut):
    """dt = softplus(delta + bias), ut = u, dtu = dt * u for steps t0..t0+tl of channels d0..d0+cb."""
    for j in range(tl):
        drow = delta[b, t0 + j, d0:d0 + cb]
        urow = u[b, t0 + j, d0:d0 + cb]
        for c in range(cb):
            dt[j, c] = drow[c] + bias[d0 + c]
            ut[j, c] = urow[c]
    if use_softplus:
        for j in range(tl):
            for c in range(cb):
                dt[j, c] = softplus(dt[j, c])
    for j in range(tl):
        for c in range(cb):
            dtu[j, c] = dt[j, c] * ut[j, c]


@njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _load_block(src, b, d0, cb, dst, scale):
    """dst[n, c] = src[b, d0 + c, n] * scale: a (d_inner, N)-major block transposed to (N, channels)."""
    for n in range(dst.shape[0]):
        for c in range(cb):
            dst[n, c] = src[b, d0 + c, n] * scale


@njit(nogil=True, fastmath=True, error_model="numpy", cache=True)
def _scan_fwd(u, delta, A, Bm, Cm, Dv, z, bias, h0, use_softplus, has_z, y, hT, item, slot):
    bsz, length, dim = u.shape
    N = A.shape[1]
    nblk = (dim + _BLOCK - 1) // _BLOCK
    A3 = A.reshape(1, dim, N)
    b = item // nblk
    d0 = (item - b * nblk) * _BLOCK
    cb = min(_BLOCK, dim - d0)
    h = np.zeros((N, _BLOCK), _F32)
    a2 = np.zeros((N, _BLOCK), _F32)
    _load_block(h0, b, d0, cb, h, _F32(1.0))
    _load_block(A3, 0, d0, cb, a2, LOG2E)
    dt = np.zeros((_TILE, _BLOCK), _F32)
    dtu = np.zeros((_TILE, _BLOCK), _F32)
    ut = np.zeros((_TILE, _BLOCK), _F32)
    yt = np.zeros((_TILE, _BLOCK), _F32)
    for t0 in range(0, length, _TILE):
        tl = min(_TILE, length - t0)
        _stage_dt(delta, u, bias, b, t0, tl, d0, cb, use_softplus, dt, dtu, ut)
        for j in range(tl):
            for c in range(_BLOCK):
                yt[j, c] = 0.0
            for n in range(N):
                bn = Bm[b, t0 + j, n]
                cn = Cm[b, t0 + j, n]
                for c in range(_BLOCK):
                    hv = exp2(dt[j, c] * a2[n, c]) * h[n, c] + dtu[j, c] * bn
                    h[n, c] = hv
                    yt[j, c] += cn * hv
        for j in range(tl):
            yrow = y[b, t0 + j, d0:d0 + cb]
            for c in range(cb):
                yrow[c] = yt[j, c] + Dv[d0 + c] * ut[j, c]
            if has_z:
                zrow = z[b, t0 + j, d0:d0 + cb]
                for c in range(cb):
                    yrow[c] *= zrow[c] * sigmoid(zrow[c])
    for n in range(N):
        for c in range(cb):
            hT[b, d0 + c, n] = h[n, c]


@njit(nogil=True, fastmath=True, error_model="numpy", cache=True)
def _scan_bwd(u, delta, A, Bm, Cm, Dv, z, bias, h0, use_softplus, has_z, dy, dhT,
              du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, dh0, item, slot):
    bsz, length, dim = u.shape
    N = A.shape[1]
    nblk = (dim + _BLOCK - 1) // _BLOCK
    ntile = (length + _TILE - 1) // _TILE
    A3 = A.reshape(1, dim, N)
    b = item // nblk
    d0 = (item - b * nblk) * _BLOCK
    cb = min(_BLOCK, dim - d0)
    # The SIMD loops run over all _BLOCK lanes; lanes past cb must stay zero, since dB and dC sum them.
    checkpoints = np.zeros((ntile, N, _BLOCK), _F32)
    hs = np.zeros((_TILE + 1, N, _BLOCK), _F32)
    das = np.zeros((_TILE, N, _BLOCK), _F32)
    a = np.zeros((N, _BLOCK), _F32)
    a2 = np.zeros((N, _BLOCK), _F32)
    g = np.zeros((N, _BLOCK), _F32)
    dA_acc = np.zeros((N, _BLOCK), _F32)
    dt = np.zeros((_TILE, _BLOCK), _F32)
    dtu = np.zeros((_TILE, _BLOCK), _F32)
    ut = np.zeros((_TILE, _BLOCK), _F32)
    gy = np.zeros((_TILE, _BLOCK), _F32)  # gradient reaching C.h + D u
    yc = np.zeros((_TILE, _BLOCK), _F32)  # C.h
    gu = np.zeros((_TILE, _BLOCK), _F32)
    gdt = np.zeros((_TILE, _BLOCK), _F32)
    _load_block(A3, 0, d0, cb, a, _F32(1.0))
    _load_block(A3, 0, d0, cb, a2, LOG2E)
    h = hs[0]
    _load_block(h0, b, d0, cb, h, _F32(1.0))
    for ti in range(ntile):
        t0 = ti * _TILE
        tl = min(_TILE, length - t0)
        checkpoints[ti] = h
        _stage_dt(delta, u, bias, b, t0, tl, d0, cb, use_softplus, dt, dtu, ut)
        for j in range(tl):
            for n in range(N):
                bn = Bm[b, t0 + j, n]
                for c in range(_BLOCK):
                    h[n, c] = exp2(dt[j, c] * a2[n, c]) * h[n, c] + dtu[j, c] * bn
    _load_block(dhT, b, d0, cb, g, _F32(1.0))
    for ti in range(ntile - 1, -1, -1):
        t0 = ti * _TILE
        tl = min(_TILE, length - t0)
        _stage_dt(delta, u, bias, b, t0, tl, d0, cb, use_softplus, dt, dtu, ut)
        hs[0] = checkpoints[ti]
        for j in range(tl):
            for n in range(N):
                bn = Bm[b, t0 + j, n]
                for c in range(_BLOCK):
                    e = exp2(dt[j, c] * a2[n, c])
                    das[j, n, c] = e
                    hs[j + 1, n, c] = e * hs[j, n, c] + dtu[j, c] * bn
        for j in range(tl):
            grow = dy[b, t0 + j, d0:d0 + cb]
            for c in range(cb):
                gy[j, c] = grow[c]
            if has_z:
                zrow = z[b, t0 + j, d0:d0 + cb]
                for c in range(cb):
                    gy[j, c] *= zrow[c] * sigmoid(zrow[c])
            for c in range(cb):
                gu[j, c] = gy[j, c] * Dv[d0 + c]
                gdt[j, c] = 0.0
                yc[j, c] = 0.0
        for j in range(tl - 1, -1, -1):
            t = t0 + j
            for n in range(N):
                bn = Bm[b, t, n]
                cn = Cm[b, t, n]
                sb = _F32(0.0)
                sc = _F32(0.0)
                for c in range(_BLOCK):
                    hv = hs[j + 1, n, c]
                    gn = g[n, c] + gy[j, c] * cn  # dLoss/dh_t, all paths
                    yc[j, c] += cn * hv
                    sc += gy[j, c] * hv
                    sb += gn * dtu[j, c]
                    gu[j, c] += gn * dt[j, c] * bn
                    hda = hs[j, n, c] * das[j, n, c]
                    gdt[j, c] += gn * (bn * ut[j, c] + hda * a[n, c])
                    dA_acc[n, c] += gn * hda * dt[j, c]
                    g[n, c] = gn * das[j, n, c]
                dB_part[slot, b, t, n] += sb
                dC_part[slot, b, t, n] += sc
        for j in range(tl):
            t = t0 + j
            du[b, t, d0:d0 + cb] = gu[j, :cb]
            drow = delta[b, t, d0:d0 + cb]
            for c in range(cb):
                d = d0 + c
                gv = gdt[j, c] * sigmoid(drow[c] + bias[d]) if use_softplus else gdt[j, c]
                ddelta[b, t, d] = gv
                dbias_part[slot, d] += gv
                dD_part[slot, d] += gy[j, c] * ut[j, c]
            if has_z:
                zrow = z[b, t, d0:d0 + cb]
                grow = dy[b, t, d0:d0 + cb]
                for c in range(cb):
                    s = sigmoid(zrow[c])
                    yfull = yc[j, c] + Dv[d0 + c] * ut[j, c]
                    dz[b, t, d0 + c] = grow[c] * yfull * s * (_F32(1.0) + zrow[c] * (_F32(1.0) - s))
    for n in range(N):
        for c in range(cb):
            dh0[b, d0 + c, n] = g[n, c]
            dA_part[slot, d0 + c, n] += dA_acc[n, c]


@njit(fastmath=True, error_model="numpy", cache=True)
def _state_update(state, x, dt, A, Bm, Cm, Dv, z, bias, use_softplus, has_z, y):
    bsz, dim, N = state.shape
    for b in range(bsz):
        for d in range(dim):
            v = dt[b, d] + bias[d]
            dtv = softplus(v) if use_softplus else v
            dtx = dtv * x[b, d]
            acc = Dv[d] * x[b, d]
            for n in range(N):
                hv = exp2(dtv * A[d, n] * LOG2E) * state[b, d, n] + dtx * Bm[b, n]
                state[b, d, n] = hv
                acc += hv * Cm[b, n]
            if has_z:
                acc *= z[b, d] * sigmoid(z[b, d])
            y[b, d] = acc


def _vec_or_zeros(t: torch.Tensor | None, n: int) -> np.ndarray:
    return np.zeros(n, np.float32) if t is None else as_numpy(t)


def _optional(t: torch.Tensor | None, ndim: int) -> np.ndarray:
    """Numba compiles once per argument type, so an absent z is passed as a dummy array of its rank."""
    return np.zeros((1,) * ndim, np.float32) if t is None else as_numpy(t)


def _common(u, delta, A, B, C, D, z, delta_bias, h0):
    bsz, _, dim = u.shape
    h0 = np.zeros((bsz, dim, A.shape[1]), np.float32) if h0 is None else as_numpy(h0)
    return (*(as_numpy(t) for t in (u, delta, A, B, C)), _vec_or_zeros(D, dim), _optional(z, 3),
            _vec_or_zeros(delta_bias, dim), h0)


def scan_forward(u, delta, A, B, C, D, z, delta_bias, h0, softplus):
    """Channel-last scan. Returns y (batch, L, d_inner) in u's dtype and the final state (fp32)."""
    bsz, length, dim = u.shape
    y = torch.empty(bsz, length, dim, dtype=torch.float32)
    hT = torch.empty(bsz, dim, A.shape[1], dtype=torch.float32)
    args = _common(u, delta, A, B, C, D, z, delta_bias, h0)
    items = bsz * -(-dim // _BLOCK)
    run_parallel(_scan_fwd, items, workers_for(items), *args, softplus, z is not None, y.numpy(), hT.numpy())
    return y.to(u.dtype), hT


def scan_backward(dy, dhT, u, delta, A, B, C, D, z, delta_bias, h0, softplus):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0), all fp32, channel-last."""
    bsz, length, dim = u.shape
    N = A.shape[1]
    items = bsz * -(-dim // _BLOCK)
    workers = workers_for(items)
    f32 = {"dtype": torch.float32}
    du, ddelta = torch.empty(bsz, length, dim, **f32), torch.empty(bsz, length, dim, **f32)
    dz = torch.empty(bsz, length, dim, **f32) if z is not None else torch.empty(1, 1, 1, **f32)
    dB_part, dC_part = (torch.zeros(workers, bsz, length, N, **f32) for _ in range(2))
    dA_part = torch.zeros(workers, dim, N, **f32)
    dD_part, dbias_part = torch.zeros(workers, dim, **f32), torch.zeros(workers, dim, **f32)
    dh0 = torch.empty(bsz, dim, N, **f32)
    outputs = (du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, dh0)
    inputs = _common(u, delta, A, B, C, D, z, delta_bias, h0)
    run_parallel(_scan_bwd, items, workers, *inputs, softplus, z is not None, as_numpy(dy), as_numpy(dhT),
                 *(t.numpy() for t in outputs))
    return (du, ddelta, dA_part.sum(0), dB_part.sum(0), dC_part.sum(0), dD_part.sum(0),
            dz if z is not None else None, dbias_part.sum(0), dh0)


# numba kernels run on numpy views of the tensors, which torch.compile cannot trace: a compiled decode
# step calls them as they are, between compiled pieces.
@torch.compiler.disable
def state_update(state, x, dt, A, B, C, D, z, dt_bias, softplus):
    """One decoding step; `state` (batch, d_inner, N) fp32 is updated in place."""
    if state.dtype != torch.float32 or not state.is_contiguous() or state.device.type != "cpu":
        raise ValueError("the CPU state update needs a contiguous float32 CPU state")
    dim = x.shape[1]
    y = torch.empty(x.shape, dtype=torch.float32)
    _state_update(state.detach().numpy(), *(as_numpy(t) for t in (x, dt, A, B, C)), _vec_or_zeros(D, dim),
                  _optional(z, 2), _vec_or_zeros(dt_bias, dim), softplus, z is not None, y.numpy())
    return y.to(x.dtype)
