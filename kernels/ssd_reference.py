"""Plain-torch Mamba-2 SSD (state space duality) scan: the oracle, the chunked "reference" backend, and
the decoding step.

Layout (mamba_ssm's `mamba_chunk_scan_combined`, channel-last):
    x, z, y      (batch, L, nheads, headdim)
    dt           (batch, L, nheads)          raw: dt_bias, softplus and the dt_limit clamp are applied here
    A, D, dt_bias (nheads,)                  A < 0, one scalar per head
    B, C         (batch, L, ngroups, N)      head h reads group h // (nheads // ngroups)
    state        (batch, nheads, headdim, N) fp32

    dt_t = clamp(softplus(dt_t + dt_bias), *dt_limit)
    h_t  = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T
    y_t  = (h_t C_t + D x_t) * silu(z_t)

`ssd_scan_recurrent` walks that recurrence one step at a time (the oracle the others are tested
against). `ssd_scan_chunked` computes the same thing in chunks of Q steps as matmuls (the SSD
algorithm): inside a chunk the output is a masked, decayed attention-like product C B^T x; between
chunks only the (headdim, N) states are carried. Autograd works through it, with activation memory
O(L Q nheads), so it is the "reference" backend and the backward of the Triton one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .reference import _discretised_dt, _gate

NO_LIMIT = (0.0, math.inf)


@dataclass(frozen=True)
class SSDOptions:
    """The non-tensor arguments of a scan, carried through the shared autograd Function."""

    softplus: bool = True
    dt_limit: tuple[float, float] = NO_LIMIT
    chunk_size: int = 256


def discretised_dt(dt: torch.Tensor, bias: torch.Tensor | None, softplus: bool,
                   dt_limit: tuple[float, float]) -> torch.Tensor:
    """fp32 clamp(softplus(dt + bias), *dt_limit); bias broadcasts over dt's last (head) dimension."""
    out = _discretised_dt(dt, bias, softplus)
    lo, hi = dt_limit
    return out.clamp(lo, hi) if lo > 0 or hi < math.inf else out


def _per_head(t: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    """B or C with its group dimension `dim` repeated out to one entry per head, fp32."""
    return t.float().repeat_interleave(heads // t.shape[dim], dim=dim)


def _gated(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """y + D x, times silu(z), with D per head broadcast over headdim; in x's dtype."""
    return _gate(y, x, None if D is None else D[:, None], z).to(x.dtype)


def ssd_scan_recurrent(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True, initial_state=None,
                       dt_limit=NO_LIMIT):
    """The recurrence, one step at a time (tests only: its autograd graph grows with L).
    Returns (y in x's dtype, final state fp32)."""
    batch, length, heads, headdim = x.shape
    step = discretised_dt(dt, dt_bias, dt_softplus, dt_limit)  # (batch, L, nheads)
    Bh, Ch = _per_head(B, heads, 2), _per_head(C, heads, 2)  # (batch, L, nheads, N)
    xf = x.float()
    if initial_state is None:
        h = x.new_zeros(batch, heads, headdim, B.shape[-1], dtype=torch.float32)
    else:
        h = initial_state.float()
    ys = []
    for t in range(length):
        decay = torch.exp(step[:, t] * A.float())[..., None, None]  # (batch, nheads, 1, 1)
        h = decay * h + (step[:, t, :, None] * xf[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))  # (batch, nheads, headdim)
    y = torch.stack(ys, dim=1) if ys else xf.new_zeros(batch, 0, heads, headdim)
    return _gated(y, x, D, z), h


def _chunks(t: torch.Tensor, size: int) -> torch.Tensor:
    """(batch, L, ...) zero-padded to whole chunks and viewed as (batch, n_chunks, size, ...)."""
    pad = -t.shape[1] % size
    if pad:
        t = torch.cat([t, t.new_zeros(t.shape[0], pad, *t.shape[2:])], dim=1)
    return t.view(t.shape[0], -1, size, *t.shape[2:])


def ssd_scan_chunked(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True, initial_state=None,
                     dt_limit=NO_LIMIT, chunk_size=256):
    """The SSD algorithm in torch ops, in chunks of `chunk_size` steps (any size gives the same result,
    up to rounding). Returns (y in x's dtype, final state fp32).

    Glossary of the einsum letters: b batch, c chunk, l and s positions in a chunk (target, source),
    g group, r head within its group (nheads = g r), p headdim, n state."""
    batch, length, heads, headdim = x.shape
    groups, n = B.shape[2], B.shape[3]
    size = max(1, min(chunk_size, length))
    step = _chunks(discretised_dt(dt, dt_bias, dt_softplus, dt_limit), size)  # (b, c, l, h); padding: 0
    xs = _chunks(x.float(), size).unflatten(3, (groups, -1))  # (b, c, l, g, r, p)
    Bs, Cs = _chunks(B.float(), size), _chunks(C.float(), size)  # (b, c, l, g, n)
    cum = torch.cumsum(step * A.float(), dim=2)  # log of the decay from each chunk's start, (b, c, l, h)

    # Inside a chunk: y_l = sum_{s <= l} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s.
    causal = torch.ones(size, size, dtype=torch.bool, device=x.device).tril()
    gap = (cum[:, :, :, None] - cum[:, :, None]).masked_fill(~causal[:, :, None], -math.inf)
    weight = torch.exp(gap) * step[:, :, None]  # (b, c, l, s, h)
    scores = torch.einsum("bclgn,bcsgn->bclsg", Cs, Bs)[..., None] * weight.unflatten(4, (groups, -1))
    y = torch.einsum("bclsgr,bcsgrp->bclgrp", scores, xs)

    # Each chunk's own contribution to the state at its end, from a zero start.
    to_end = (torch.exp(cum[:, :, -1:] - cum) * step).unflatten(3, (groups, -1))  # (b, c, l, g, r)
    ends = torch.einsum("bclgn,bclgr,bclgrp->bcgrpn", Bs, to_end, xs).flatten(2, 3)  # (b, c, h, p, n)

    # Between chunks: start_{c+1} = exp(cum_c[-1]) start_c + ends_c, sequentially (n_chunks steps).
    if initial_state is None:
        state = x.new_zeros(batch, heads, headdim, n, dtype=torch.float32)
    else:
        state = initial_state.float()
    chunk_decay = torch.exp(cum[:, :, -1])[..., None, None]  # (b, c, h, 1, 1)
    starts = []
    for c in range(ends.shape[1]):
        starts.append(state)
        state = chunk_decay[:, c] * state + ends[:, c]
    start = torch.stack(starts, dim=1).unflatten(2, (groups, -1))  # (b, c, g, r, p, n)

    # The start state's contribution, decayed to each position.
    from_start = torch.einsum("bclgn,bcgrpn->bclgrp", Cs, start)
    y = y + from_start * torch.exp(cum).unflatten(3, (groups, -1))[..., None]
    y = y.flatten(1, 2)[:, :length].flatten(2, 3)  # (b, L, h, p)
    return _gated(y, x, D, z), state


def scan_forward(x, dt, A, B, C, D, z, dt_bias, h0, options: SSDOptions):
    """The chunked scan with the fused backends' argument order."""
    return ssd_scan_chunked(x, dt, A, B, C, D, z, dt_bias, options.softplus, h0, options.dt_limit,
                            options.chunk_size)


def scan_backward(dy, dhT, x, dt, A, B, C, D, z, dt_bias, h0, options: SSDOptions):
    """Gradients (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dh0) of the scan, by autograd through the
    chunked torch scan recomputed from the inputs: the backward of any forward that computes the same
    function. Entries for absent (None) inputs are None."""
    inputs = (x, dt, A, B, C, D, z, dt_bias, h0)
    leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
    with torch.enable_grad():
        y, hT = scan_forward(*leaves, options)
        present = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad((y, hT), present, (dy, dhT)))
    return tuple(None if t is None else next(grads) for t in leaves)


def ssd_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True,
                     dt_limit=NO_LIMIT):
    """One decoding step: x, z (batch, nheads, headdim); dt (batch, nheads); B, C (batch, ngroups, N).
    Updates `state` (batch, nheads, headdim, N) fp32 in place; returns y (batch, nheads, headdim)."""
    heads = x.shape[1]
    step = discretised_dt(dt, dt_bias, dt_softplus, dt_limit)[..., None, None]  # (batch, nheads, 1, 1)
    Bh, Ch = _per_head(B, heads, 1), _per_head(C, heads, 1)  # (batch, nheads, N)
    decay = torch.exp(step * A.float()[:, None, None])
    h = decay * state.float() + step * x.float()[..., None] * Bh[:, :, None]  # (batch, nheads, headdim, N)
    state.copy_(h)
    return _gated((h * Ch[:, :, None]).sum(-1), x, D, z)


def state_update(state, x, dt, A, B, C, D, z, dt_bias, options: SSDOptions):
    """The decoding step with the fused backends' argument order."""
    return ssd_state_update(state, x, dt, A, B, C, D, z, dt_bias, options.softplus, options.dt_limit)
