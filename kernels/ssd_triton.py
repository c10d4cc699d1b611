"""GPU Mamba-2 SSD scan in Triton, chunked as in the Mamba-2 paper (also runs under TRITON_INTERPRET=1
on CPU tensors, for tests). Layout: see ssd_reference.py; x, z and y are (batch, L, nheads, headdim) and
B, C (batch, L, ngroups, N), read through their strides with the last dimension contiguous, so the
model's slices of one projection are read in place.

L is cut into chunks of CHUNK steps (a power of two, 16 to 256), in four launches:
1. chunk cumsum: per (batch, chunk, block of heads), the discretised dt (bias, softplus, clamp; 0 past
   L) and its running sum times A inside the chunk, `cum` (batch, nheads, n_chunks, CHUNK);
2. chunk state: per (batch, chunk, head, headdim block), the state each chunk reaches from zero,
   sum_s exp(cum[-1] - cum[s]) dt_s x_s B_s^T: one (headdim x CHUNK) @ (CHUNK x N) matmul;
3. state passing: per (batch, head, block of the state), a sequential pass over the chunks turning
   those into each chunk's start state, start_{c+1} = exp(cum_c[-1]) start_c + end_c, and the final
   state;
4. chunk scan: per (batch, chunk, head, block of BLOCK_M rows, headdim block), the output
   y_l = exp(cum_l) C_l start + sum_{s <= l} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s + D x_l, times
   silu(z_l): two more matmuls per block of source rows.
Only the per-chunk states (batch, n_chunks, nheads, headdim, N) fp32 go through memory besides the
inputs and y; with CHUNK 256 they are about as many bytes as x itself.

Matmuls take fp32 operands in exact ("ieee") precision when x is fp32, so fp32 results match the
reference to rounding; with bf16/fp16 inputs their operands are cast to that type (tensor cores) and
accumulate in fp32, as mamba_ssm does. Triton's CPU interpreter multiplies bf16 operands wrongly, so
under it they stay fp32.

The decoding step is one small kernel per (batch, head, headdim block). There is no Triton backward:
gradients come from autograd through the chunked torch scan (ssd_reference.scan_backward).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .backends import triton_interpreting
from .ssd_reference import SSDOptions, scan_backward
from .triton_scan import _softplus

_MAX_CHUNK = 256
_BLOCK_H = 16  # heads per chunk-cumsum program
_BLOCK_STATE = 1024  # state elements per state-passing program
_NUM_WARPS = 8  # matmul kernels: their (64 x N) and (N x 64) fp32 tiles need the registers of 8 warps


@triton.jit
def _discretise(raw, bias, lo, hi, SOFTPLUS: tl.constexpr):
    v = raw + bias
    if SOFTPLUS:
        v = _softplus(v)
    return tl.minimum(tl.maximum(v, lo), hi)


@triton.jit
def _chunk_cumsum_kernel(dt_ptr, A_ptr, bias_ptr, dt_out_ptr, cum_ptr, length, n_heads, n_chunks,
                         s_dt_b, s_dt_l, lo, hi, SOFTPLUS: tl.constexpr, CHUNK: tl.constexpr,
                         BLOCK_H: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1)
    offs_h = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_l = tl.arange(0, CHUNK)
    t = c * CHUNK + offs_l
    mask_h = offs_h < n_heads
    mask = mask_h[:, None] & (t < length)[None, :]
    raw = tl.load(dt_ptr + b.to(tl.int64) * s_dt_b + t[None, :].to(tl.int64) * s_dt_l + offs_h[:, None],
                  mask=mask, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + offs_h, mask=mask_h, other=0.0)
    step = tl.where(mask, _discretise(raw, bias[:, None], lo, hi, SOFTPLUS), 0.0)  # (heads, steps)
    a = tl.load(A_ptr + offs_h, mask=mask_h, other=0.0)
    cum = tl.cumsum(step * a[:, None], axis=1)
    out = ((b * n_heads + offs_h[:, None]).to(tl.int64) * n_chunks + c) * CHUNK + offs_l[None, :]
    tl.store(dt_out_ptr + out, step, mask=mask_h[:, None])
    tl.store(cum_ptr + out, cum, mask=mask_h[:, None])


@triton.jit
def _chunk_state_kernel(x_ptr, B_ptr, dt_ptr, cum_ptr, states_ptr, length, n_heads, n_chunks,
                        heads_per_group, headdim, n_state, s_x_b, s_x_l, s_x_h, s_B_b, s_B_l, s_B_g,
                        DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, CHUNK: tl.constexpr,
                        BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0) // n_chunks
    c = tl.program_id(0) % n_chunks
    h = tl.program_id(1)
    g = h // heads_per_group
    offs_p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < n_state
    row = ((b * n_heads + h).to(tl.int64) * n_chunks + c) * CHUNK
    cum_end = tl.load(cum_ptr + row + CHUNK - 1)  # steps past L add 0, so this is the last real one
    acc = tl.zeros((BLOCK_P, BLOCK_N), tl.float32)
    for k0 in range(0, CHUNK, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        t = (c * CHUNK + offs_k).to(tl.int64)
        mask_k = t < length
        xk = tl.load(x_ptr + b * s_x_b + t[:, None] * s_x_l + h * s_x_h + offs_p[None, :],
                     mask=mask_k[:, None] & mask_p[None, :], other=0.0).to(tl.float32)
        Bk = tl.load(B_ptr + b * s_B_b + t[:, None] * s_B_l + g * s_B_g + offs_n[None, :],
                     mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        weight = tl.exp(cum_end - tl.load(cum_ptr + row + offs_k)) * tl.load(dt_ptr + row + offs_k)
        xw = tl.trans(xk * weight[:, None]).to(DOT_DTYPE)  # (headdim, steps)
        acc += tl.dot(xw, Bk.to(DOT_DTYPE), input_precision=PRECISION)
    out = ((b * n_chunks + c) * n_heads + h).to(tl.int64) * headdim * n_state
    tl.store(states_ptr + out + offs_p[:, None] * n_state + offs_n[None, :], acc,
             mask=mask_p[:, None] & mask_n[None, :])


@triton.jit
def _state_passing_kernel(states_ptr, cum_ptr, h0_ptr, final_ptr, n_heads, n_chunks, size,
                          HAS_H0: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """Overwrites states (batch, n_chunks, nheads, headdim * N) in place: each chunk's end state from
    zero becomes its start state; writes the final state (batch, nheads, headdim * N)."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < size
    head = (b * n_heads + h).to(tl.int64)
    state = tl.zeros((BLOCK,), tl.float32)
    if HAS_H0:
        state = tl.load(h0_ptr + head * size + offs, mask=mask, other=0.0)
    for c in range(n_chunks):
        ptr = states_ptr + ((b * n_chunks + c) * n_heads + h).to(tl.int64) * size + offs
        end = tl.load(ptr, mask=mask, other=0.0)
        tl.store(ptr, state, mask=mask)
        decay = tl.exp(tl.load(cum_ptr + (head * n_chunks + c) * CHUNK + CHUNK - 1))
        state = decay * state + end
    tl.store(final_ptr + head * size + offs, state, mask=mask)


@triton.jit
def _chunk_scan_kernel(x_ptr, z_ptr, B_ptr, C_ptr, dt_ptr, cum_ptr, starts_ptr, D_ptr, y_ptr,
                       length, n_heads, n_chunks, heads_per_group, headdim, n_state,
                       s_x_b, s_x_l, s_x_h, s_z_b, s_z_l, s_z_h, s_B_b, s_B_l, s_B_g, s_C_b, s_C_l, s_C_g,
                       HAS_Z: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
                       CHUNK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr,
                       BLOCK_N: tl.constexpr):
    b = tl.program_id(0) // n_chunks
    c = tl.program_id(0) % n_chunks
    h = tl.program_id(1)
    g = h // heads_per_group
    n_pblocks = tl.cdiv(headdim, BLOCK_P)
    m_block = tl.program_id(2) // n_pblocks
    offs_p = (tl.program_id(2) % n_pblocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < n_state
    t_m = (c * CHUNK + offs_m).to(tl.int64)
    mask_m = t_m < length
    row = ((b * n_heads + h).to(tl.int64) * n_chunks + c) * CHUNK
    cum_m = tl.load(cum_ptr + row + offs_m)
    Cm = tl.load(C_ptr + b * s_C_b + t_m[:, None] * s_C_l + g * s_C_g + offs_n[None, :],
                 mask=mask_m[:, None] & mask_n[None, :], other=0.0).to(DOT_DTYPE)

    # From the chunk's start state, decayed to each row.
    start_off = ((b * n_chunks + c) * n_heads + h).to(tl.int64) * headdim * n_state
    start = tl.load(starts_ptr + start_off + offs_n[:, None] + offs_p[None, :] * n_state,
                    mask=mask_n[:, None] & mask_p[None, :], other=0.0)  # (N, headdim)
    acc = tl.dot(Cm, start.to(DOT_DTYPE), input_precision=PRECISION) * tl.exp(cum_m)[:, None]

    # From the chunk's own steps up to each row: a causal, decayed (C B^T) x.
    for k0 in range(0, (m_block + 1) * BLOCK_M, BLOCK_M):
        offs_k = k0 + tl.arange(0, BLOCK_M)
        t_k = (c * CHUNK + offs_k).to(tl.int64)
        mask_k = t_k < length
        Bk = tl.load(B_ptr + b * s_B_b + t_k[None, :] * s_B_l + g * s_B_g + offs_n[:, None],
                     mask=mask_n[:, None] & mask_k[None, :], other=0.0).to(DOT_DTYPE)  # (N, steps)
        scores = tl.dot(Cm, Bk, input_precision=PRECISION)  # (rows, steps)
        gap = cum_m[:, None] - tl.load(cum_ptr + row + offs_k)[None, :]
        causal = offs_m[:, None] >= offs_k[None, :]
        # exp of the (positive) gap above the diagonal could overflow: clamp it before masking.
        decay = tl.where(causal, tl.exp(tl.minimum(gap, 0.0)), 0.0)
        scores *= decay * tl.load(dt_ptr + row + offs_k)[None, :]
        xk = tl.load(x_ptr + b * s_x_b + t_k[:, None] * s_x_l + h * s_x_h + offs_p[None, :],
                     mask=mask_k[:, None] & mask_p[None, :], other=0.0)
        acc += tl.dot(scores.to(DOT_DTYPE), xk.to(DOT_DTYPE), input_precision=PRECISION)

    mask_mp = mask_m[:, None] & mask_p[None, :]
    xm = tl.load(x_ptr + b * s_x_b + t_m[:, None] * s_x_l + h * s_x_h + offs_p[None, :], mask=mask_mp,
                 other=0.0)
    acc += tl.load(D_ptr + h) * xm.to(tl.float32)
    if HAS_Z:
        zm = tl.load(z_ptr + b * s_z_b + t_m[:, None] * s_z_l + h * s_z_h + offs_p[None, :], mask=mask_mp,
                     other=0.0).to(tl.float32)
        acc *= zm * tl.sigmoid(zm)
    y_row = (b * length + t_m) * n_heads + h
    tl.store(y_ptr + y_row[:, None] * headdim + offs_p[None, :], acc, mask=mask_mp)


@triton.jit
def _state_update_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
                         n_heads, heads_per_group, headdim, n_state, lo, hi,
                         s_x_b, s_x_h, s_dt_b, s_B_b, s_B_g, s_C_b, s_C_g, s_z_b, s_z_h,
                         HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_P: tl.constexpr,
                         BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    g = h // heads_per_group
    offs_p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < headdim
    mask_n = offs_n < n_state
    mask_pn = mask_p[:, None] & mask_n[None, :]
    raw = tl.load(dt_ptr + b * s_dt_b + h).to(tl.float32)
    step = _discretise(raw, tl.load(bias_ptr + h), lo, hi, SOFTPLUS)
    decay = tl.exp(step * tl.load(A_ptr + h))
    x = tl.load(x_ptr + b * s_x_b + h * s_x_h + offs_p, mask=mask_p, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * s_B_b + g * s_B_g + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * s_C_b + g * s_C_g + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    head = (b * n_heads + h).to(tl.int64) * headdim * n_state
    ptr = state_ptr + head + offs_p[:, None] * n_state + offs_n[None, :]
    state = decay * tl.load(ptr, mask=mask_pn, other=0.0) + (step * x)[:, None] * Bv[None, :]
    tl.store(ptr, state, mask=mask_pn)
    y = tl.sum(state * Cv[None, :], axis=1) + tl.load(D_ptr + h) * x
    if HAS_Z:
        zz = tl.load(z_ptr + b * s_z_b + h * s_z_h + offs_p, mask=mask_p, other=0.0).to(tl.float32)
        y *= zz * tl.sigmoid(zz)
    tl.store(y_ptr + (b * n_heads + h) * headdim + offs_p, y, mask=mask_p)


def _unit_last(t: torch.Tensor | None) -> torch.Tensor | None:
    """t with a contiguous last dimension (a copy only when it is not already), detached."""
    if t is None:
        return None
    t = t.detach()
    return t if t.stride(-1) == 1 else t.contiguous()


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _per_head(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """D or dt_bias as fp32, zeros when absent (adding 0 costs less than a kernel variant)."""
    return torch.zeros_like(like) if t is None else _fp32(t)


def _chunk_len(chunk_size: int, length: int) -> int:
    """A power of two in [16, 256], no longer than L needs."""
    return max(16, min(_MAX_CHUNK, triton.next_power_of_2(chunk_size), triton.next_power_of_2(length)))


def _dot_options(dtype: torch.dtype) -> dict:
    """The matmul operand type and precision for inputs of `dtype` (see the module docstring)."""
    low = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(dtype)
    if low is None or triton_interpreting():
        return {"DOT_DTYPE": tl.float32, "PRECISION": "ieee"}
    return {"DOT_DTYPE": low, "PRECISION": "tf32"}  # the precision only applies to fp32 operands


def _strides(t: torch.Tensor | None, dims: int) -> tuple[int, ...]:
    return (0,) * dims if t is None else t.stride()[:dims]


def scan_forward(x, dt, A, B, C, D, z, dt_bias, h0, options: SSDOptions):
    """y (batch, L, nheads, headdim) in x's dtype and the final state (fp32)."""
    bsz, length, heads, headdim = x.shape
    groups, n = B.shape[2], B.shape[3]
    dev = x.device
    x, dt, B, C, z = (_unit_last(t) for t in (x, dt, B, C, z))
    A, h0 = _fp32(A), _fp32(h0)
    D, bias = _per_head(D, A), _per_head(dt_bias, A)
    y = torch.empty(bsz, length, heads, headdim, device=dev, dtype=x.dtype)
    final = torch.empty(bsz, heads, headdim, n, device=dev, dtype=torch.float32)
    chunk = _chunk_len(options.chunk_size, length)
    n_chunks = triton.cdiv(length, chunk)
    f32 = {"device": dev, "dtype": torch.float32}
    step, cum = (torch.empty(bsz, heads, n_chunks, chunk, **f32) for _ in range(2))
    states = torch.empty(bsz, n_chunks, heads, headdim, n, **f32)
    lo, hi = options.dt_limit
    _chunk_cumsum_kernel[(bsz, n_chunks, triton.cdiv(heads, _BLOCK_H))](
        dt, A, bias, step, cum, length, heads, n_chunks, dt.stride(0), dt.stride(1), lo, hi,
        SOFTPLUS=options.softplus, CHUNK=chunk, BLOCK_H=_BLOCK_H)
    blocks = {"BLOCK_P": max(16, min(64, triton.next_power_of_2(headdim))),
              "BLOCK_N": max(16, triton.next_power_of_2(n))}
    dots = _dot_options(x.dtype)
    per_group = heads // groups
    n_pblocks = triton.cdiv(headdim, blocks["BLOCK_P"])
    _chunk_state_kernel[(bsz * n_chunks, heads, n_pblocks)](
        x, B, step, cum, states, length, heads, n_chunks, per_group, headdim, n, *_strides(x, 3),
        *_strides(B, 3), CHUNK=chunk, BLOCK_K=min(64, chunk), num_warps=_NUM_WARPS, **dots, **blocks)
    size = headdim * n
    _state_passing_kernel[(bsz, heads, triton.cdiv(size, _BLOCK_STATE))](
        states, cum, states if h0 is None else h0, final, heads, n_chunks, size, HAS_H0=h0 is not None,
        CHUNK=chunk, BLOCK=_BLOCK_STATE)
    block_m = min(64, chunk)
    _chunk_scan_kernel[(bsz * n_chunks, heads, triton.cdiv(chunk, block_m) * n_pblocks)](
        x, x if z is None else z, B, C, step, cum, states, D, y, length, heads, n_chunks, per_group, headdim,
        n, *_strides(x, 3), *_strides(z, 3), *_strides(B, 3), *_strides(C, 3), HAS_Z=z is not None,
        CHUNK=chunk, BLOCK_M=block_m, num_warps=_NUM_WARPS, **dots, **blocks)
    return y, final


def state_update(state, x, dt, A, B, C, D, z, dt_bias, options: SSDOptions):
    """One decoding step; `state` (batch, nheads, headdim, N) fp32 contiguous is updated in place."""
    if state.dtype != torch.float32 or not state.is_contiguous():
        raise ValueError("the Triton SSD state update needs a contiguous float32 state")
    bsz, heads, headdim, n = state.shape
    x, dt, B, C, z = (_unit_last(t) for t in (x, dt, B, C, z))
    A = _fp32(A)
    D, bias = _per_head(D, A), _per_head(dt_bias, A)
    y = torch.empty(bsz, heads, headdim, device=x.device, dtype=x.dtype)
    block_p = max(16, min(64, triton.next_power_of_2(headdim)))
    lo, hi = options.dt_limit
    _state_update_kernel[(bsz, heads, triton.cdiv(headdim, block_p))](
        state, x, dt, A, B, C, D, x if z is None else z, bias, y, heads, heads // B.shape[1], headdim, n, lo,
        hi, *_strides(x, 2), dt.stride(0), *_strides(B, 2), *_strides(C, 2), *_strides(z, 2),
        HAS_Z=z is not None, SOFTPLUS=options.softplus, BLOCK_P=block_p,
        BLOCK_N=max(16, triton.next_power_of_2(n)))
    return y


# The backward is autograd through the chunked torch scan (see the module docstring).
__all__ = ["scan_backward", "scan_forward", "state_update"]
