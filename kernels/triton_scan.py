"""GPU selective scan in Triton (also runs under TRITON_INTERPRET=1 on CPU tensors, for tests).

Layout: u, delta, z, y are channel-last (batch, L, d_inner) and contiguous, B and C (batch, L, N): one
time step of a block of channels is one coalesced row. A program owns (batch, block of BLOCK_D
channels) and keeps its (BLOCK_D, N) fp32 state tile in registers while it walks the sequence.

A program is one warp: the scan is memory-bound, and many small programs per SM (each prefetching the
next step's inputs while it computes the current one) hide memory latency better than a few big ones.

When batch x channel blocks are too few to fill the GPU (batch 1 at long L is the usual case), the
sequence is also split into chunks, in three launches:
1. every chunk but the last scans from a zero state and writes its end state and its sum of dt
   (exp(A * sum dt) is the chunk's total decay);
2. one short sequential pass per (batch, channel block) combines them into each chunk's start state;
3. every chunk rescans from its true start state and writes y; the last one writes the final state.
This reads u, delta and B twice, but keeps thousands of programs busy instead of a few dozen.

The backward pass is one program per (batch, channel block): it recomputes states from checkpoints
every CHECKPOINT steps, rebuilds one checkpoint interval at a time into a scratch buffer and walks it
backwards, like the CPU kernel. Partial sums over channel blocks (dB, dC) and over the batch (dA, dD,
d delta_bias) are written per program and reduced by torch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_LOG2E = tl.constexpr(1.4426950408889634)
_BLOCK_D = 32
_CHECKPOINT = 64
_MIN_CHUNK = 256  # shortest chunk worth a separate program
_PROGRAMS_PER_SM = 32  # one-warp programs: enough resident warps to hide memory latency


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _scan_chunk_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr,
    start_ptr, y_ptr, end_ptr, dtsum_ptr,
    length, dim, n_state, chunk_len, n_chunks,
    SUMMARY: tl.constexpr, HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """SUMMARY: scan the chunk from zero, store its end state in end_ptr (batch, n_chunks, d, N) and its
    dt sum in dtsum_ptr (batch, n_chunks, d). Otherwise: scan from start_ptr (batch, n_chunks, d, N),
    store y, and from the last chunk the final state in end_ptr (batch, d, N)."""
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    chunk = tl.program_id(2)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < n_state
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn = offs_d[:, None] * n_state + offs_n[None, :]
    a2 = tl.load(A_ptr + dn, mask=mask_dn, other=0.0) * _LOG2E
    state_off = (b * n_chunks + chunk).to(tl.int64) * dim * n_state
    if SUMMARY:
        h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    else:
        h = tl.load(start_ptr + state_off + dn, mask=mask_dn, other=0.0)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0)
    dskip = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        dskip = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0)
    dtsum = tl.zeros((BLOCK_D,), tl.float32)
    t_begin = chunk * chunk_len
    t_end = tl.minimum(length, t_begin + chunk_len)
    row_base = b.to(tl.int64) * length
    # Each step's inputs are loaded one iteration ahead, so their latency overlaps the previous step's
    # math instead of stalling the recurrence. The last iteration re-reads its own row (in bounds).
    td = (row_base + t_begin) * dim + offs_d
    tn = (row_base + t_begin) * n_state + offs_n
    u_next = tl.load(u_ptr + td, mask=mask_d, other=0.0)
    dl_next = tl.load(delta_ptr + td, mask=mask_d, other=0.0)
    b_next = tl.load(B_ptr + tn, mask=mask_n, other=0.0)
    if not SUMMARY:
        c_next = tl.load(C_ptr + tn, mask=mask_n, other=0.0)
        z_next = u_next
        if HAS_Z:
            z_next = tl.load(z_ptr + td, mask=mask_d, other=0.0)
    for t in range(t_begin, t_end):
        u = u_next.to(tl.float32)
        dt = dl_next.to(tl.float32) + bias
        bm = b_next.to(tl.float32)
        if not SUMMARY:
            cm = c_next.to(tl.float32)
            zz = z_next.to(tl.float32)
        y_off = (row_base + t) * dim + offs_d
        t_next = row_base + tl.minimum(t + 1, t_end - 1)
        td = t_next * dim + offs_d
        tn = t_next * n_state + offs_n
        u_next = tl.load(u_ptr + td, mask=mask_d, other=0.0)
        dl_next = tl.load(delta_ptr + td, mask=mask_d, other=0.0)
        b_next = tl.load(B_ptr + tn, mask=mask_n, other=0.0)
        if not SUMMARY:
            c_next = tl.load(C_ptr + tn, mask=mask_n, other=0.0)
            if HAS_Z:
                z_next = tl.load(z_ptr + td, mask=mask_d, other=0.0)
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(mask_d, dt, 0.0)
        h = tl.exp2(dt[:, None] * a2) * h + (dt * u)[:, None] * bm[None, :]
        if SUMMARY:
            dtsum += dt
        else:
            y = tl.sum(h * cm[None, :], axis=1) + dskip * u
            if HAS_Z:
                y *= zz * tl.sigmoid(zz)
            tl.store(y_ptr + y_off, y, mask=mask_d)
    if SUMMARY:
        tl.store(end_ptr + state_off + dn, h, mask=mask_dn)
        tl.store(dtsum_ptr + (b * n_chunks + chunk).to(tl.int64) * dim + offs_d, dtsum, mask=mask_d)
    elif chunk == n_chunks - 1:
        tl.store(end_ptr + b.to(tl.int64) * dim * n_state + dn, h, mask=mask_dn)


@triton.jit
def _carry_kernel(A_ptr, h0_ptr, end_ptr, dtsum_ptr, start_ptr, dim, n_state, n_chunks,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """start[c] = exp(A * dtsum[c-1]) * start[c-1] + end[c-1], start[0] = h0, over (batch, n_chunks, d, N)."""
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n < n_state)[None, :]
    dn = offs_d[:, None] * n_state + offs_n[None, :]
    a2 = tl.load(A_ptr + dn, mask=mask_dn, other=0.0) * _LOG2E
    h = tl.load(h0_ptr + b.to(tl.int64) * dim * n_state + dn, mask=mask_dn, other=0.0)
    for c in range(n_chunks):
        row = b.to(tl.int64) * n_chunks + c
        tl.store(start_ptr + row * dim * n_state + dn, h, mask=mask_dn)
        if c < n_chunks - 1:
            dts = tl.load(dtsum_ptr + row * dim + offs_d, mask=mask_d, other=0.0)
            end = tl.load(end_ptr + row * dim * n_state + dn, mask=mask_dn, other=0.0)
            h = tl.exp2(dts[:, None] * a2) * h + end


@triton.jit
def _load_step(u_ptr, delta_ptr, bias, td, mask_d, SOFTPLUS: tl.constexpr):
    """u and dt = softplus(delta + bias) of one time step, as (BLOCK_D,) fp32."""
    u = tl.load(u_ptr + td, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(delta_ptr + td, mask=mask_d, other=0.0).to(tl.float32) + bias
    if SOFTPLUS:
        dt = _softplus(dt)
    return u, tl.where(mask_d, dt, 0.0)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, h0_ptr, dy_ptr, dhT_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr, ck_ptr, hs_ptr,
    length, dim, n_state, n_ck,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHECKPOINT: tl.constexpr,
):
    b = tl.program_id(0)
    pid_d = tl.program_id(1)
    n_blocks = tl.num_programs(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < n_state
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn = offs_d[:, None] * n_state + offs_n[None, :]
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # scratch is this program's own
    prog = b.to(tl.int64) * n_blocks + pid_d
    ck_base = ck_ptr + prog * n_ck * BLOCK_D * BLOCK_N
    hs_base = hs_ptr + prog * (CHECKPOINT + 1) * BLOCK_D * BLOCK_N
    a = tl.load(A_ptr + dn, mask=mask_dn, other=0.0)
    a2 = a * _LOG2E
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0)
    dskip = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        dskip = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0)
    state_off = b.to(tl.int64) * dim * n_state
    row_base = b.to(tl.int64) * length

    h = tl.load(h0_ptr + state_off + dn, mask=mask_dn, other=0.0)
    for ci in range(n_ck):
        tl.store(ck_base + ci * BLOCK_D * BLOCK_N + tile, h)
        for t in range(ci * CHECKPOINT, tl.minimum(length, (ci + 1) * CHECKPOINT)):
            td = (row_base + t) * dim + offs_d
            u, dt = _load_step(u_ptr, delta_ptr, bias, td, mask_d, SOFTPLUS)
            bm = tl.load(B_ptr + (row_base + t) * n_state + offs_n, mask=mask_n, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * a2) * h + (dt * u)[:, None] * bm[None, :]

    g = tl.load(dhT_ptr + state_off + dn, mask=mask_dn, other=0.0)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), tl.float32)
    for cr in range(n_ck):
        ci = n_ck - 1 - cr
        t0 = ci * CHECKPOINT
        steps = tl.minimum(length - t0, CHECKPOINT)
        h = tl.load(ck_base + ci * BLOCK_D * BLOCK_N + tile)
        tl.debug_barrier()
        tl.store(hs_base + tile, h)
        for j in range(steps):
            td = (row_base + t0 + j) * dim + offs_d
            u, dt = _load_step(u_ptr, delta_ptr, bias, td, mask_d, SOFTPLUS)
            tn = (row_base + t0 + j) * n_state + offs_n
            bm = tl.load(B_ptr + tn, mask=mask_n, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * a2) * h + (dt * u)[:, None] * bm[None, :]
            tl.store(hs_base + (j + 1) * BLOCK_D * BLOCK_N + tile, h)
        tl.debug_barrier()
        for jr in range(steps):
            j = steps - 1 - jr
            t = t0 + j
            td = (row_base + t) * dim + offs_d
            tn = (row_base + t) * n_state + offs_n
            u, dt = _load_step(u_ptr, delta_ptr, bias, td, mask_d, SOFTPLUS)
            bm = tl.load(B_ptr + tn, mask=mask_n, other=0.0).to(tl.float32)
            cm = tl.load(C_ptr + tn, mask=mask_n, other=0.0).to(tl.float32)
            h_t = tl.load(hs_base + (j + 1) * BLOCK_D * BLOCK_N + tile)
            h_prev = tl.load(hs_base + j * BLOCK_D * BLOCK_N + tile)
            dout = tl.load(dy_ptr + td, mask=mask_d, other=0.0).to(tl.float32)
            gy = dout
            if HAS_Z:
                zz = tl.load(z_ptr + td, mask=mask_d, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zz)
                gy = dout * zz * sz
                ycore = tl.sum(h_t * cm[None, :], axis=1) + dskip * u
                tl.store(dz_ptr + td, dout * ycore * sz * (1.0 + zz * (1.0 - sz)), mask=mask_d)
            gn = g + gy[:, None] * cm[None, :]  # dLoss/dh_t through every path
            decay = tl.exp2(dt[:, None] * a2)
            hda = h_prev * decay
            part = prog * length * n_state + t * n_state + offs_n
            tl.store(dC_ptr + part, tl.sum(gy[:, None] * h_t, axis=0), mask=mask_n)
            tl.store(dB_ptr + part, tl.sum(gn * (dt * u)[:, None], axis=0), mask=mask_n)
            tl.store(du_ptr + td, gy * dskip + dt * tl.sum(gn * bm[None, :], axis=1), mask=mask_d)
            gdt = tl.sum(gn * (bm[None, :] * u[:, None] + hda * a), axis=1)
            if SOFTPLUS:
                raw = tl.load(delta_ptr + td, mask=mask_d, other=0.0).to(tl.float32) + bias
                gdt = gdt * tl.sigmoid(raw)
            gdt = tl.where(mask_d, gdt, 0.0)
            tl.store(ddelta_ptr + td, gdt, mask=mask_d)
            dA_acc += gn * hda * dt[:, None]
            dD_acc += gy * u
            dbias_acc += gdt
            g = gn * decay
        tl.debug_barrier()
    tl.store(dh0_ptr + state_off + dn, g, mask=mask_dn)
    tl.store(dA_ptr + state_off + dn, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + b.to(tl.int64) * dim + offs_d, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + b.to(tl.int64) * dim + offs_d, dbias_acc, mask=mask_d)


@triton.jit
def _state_update_kernel(state_ptr, x_ptr, dt_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, y_ptr,
                         dim, n_state, HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < n_state
    mask_dn = mask_d[:, None] & mask_n[None, :]
    dn = offs_d[:, None] * n_state + offs_n[None, :]
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0)
    td = b.to(tl.int64) * dim + offs_d
    x, dt = _load_step(x_ptr, dt_ptr, bias, td, mask_d, SOFTPLUS)
    bm = tl.load(B_ptr + b * n_state + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    cm = tl.load(C_ptr + b * n_state + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    a2 = tl.load(A_ptr + dn, mask=mask_dn, other=0.0) * _LOG2E
    state_off = b.to(tl.int64) * dim * n_state
    h = tl.load(state_ptr + state_off + dn, mask=mask_dn, other=0.0)
    h = tl.exp2(dt[:, None] * a2) * h + (dt * x)[:, None] * bm[None, :]
    tl.store(state_ptr + state_off + dn, h, mask=mask_dn)
    y = tl.sum(h * cm[None, :], axis=1)
    if HAS_D:
        y += x * tl.load(D_ptr + offs_d, mask=mask_d, other=0.0)
    if HAS_Z:
        zz = tl.load(z_ptr + td, mask=mask_d, other=0.0).to(tl.float32)
        y *= zz * tl.sigmoid(zz)
    tl.store(y_ptr + td, y, mask=mask_d)


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _contig(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().contiguous()


def _flags(D, z, bias, softplus) -> dict:
    return {"HAS_Z": z is not None, "HAS_D": D is not None, "HAS_BIAS": bias is not None,
            "SOFTPLUS": softplus}


def steps_per_program(batch: int, dim: int, length: int, device: torch.device) -> int:
    """How many steps each program scans: all of L unless (batch x channel blocks) programs cannot
    fill the GPU on their own, in which case L is split into chunks (see the module docstring)."""
    programs = batch * triton.cdiv(dim, _BLOCK_D)
    if device.type != "cuda":
        return max(length, 1)
    want = _PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    if programs >= want:
        return max(length, 1)
    return triton.cdiv(length, min(triton.cdiv(want, programs), triton.cdiv(length, _MIN_CHUNK)))


def scan_forward(u, delta, A, B, C, D, z, delta_bias, h0, softplus, chunk_len=None):
    """Channel-last scan: y (batch, L, d_inner) in u's dtype and the final state (fp32). `chunk_len`
    overrides the split of L into chunks (tests use it to exercise the chunked path on CPU)."""
    bsz, length, dim = u.shape
    n = A.shape[1]
    u, delta, z, B, C = (_contig(t) for t in (u, delta, z, B, C))
    A, D, bias = _fp32(A), _fp32(D), _fp32(delta_bias)
    h0 = torch.zeros(bsz, dim, n, device=u.device) if h0 is None else _fp32(h0)
    y = torch.empty_like(u)
    hT = torch.empty(bsz, dim, n, device=u.device, dtype=torch.float32)
    if length == 0:
        return y, hT.copy_(h0)
    nblk = triton.cdiv(dim, _BLOCK_D)
    chunk_len = chunk_len or steps_per_program(bsz, dim, length, u.device)
    n_chunks = triton.cdiv(length, chunk_len)
    common = {"BLOCK_D": _BLOCK_D, "BLOCK_N": triton.next_power_of_2(n), "num_warps": 1,
              **_flags(D, z, bias, softplus)}
    dummy = u
    inputs = (u, delta, dummy if z is None else z, B, C, A, dummy if D is None else D,
              dummy if bias is None else bias)
    if n_chunks == 1:
        starts = h0[:, None]
    else:
        ends = torch.empty(bsz, n_chunks, dim, n, device=u.device, dtype=torch.float32)
        dtsum = torch.empty(bsz, n_chunks, dim, device=u.device, dtype=torch.float32)
        starts = torch.empty_like(ends)
        _scan_chunk_kernel[(bsz, nblk, n_chunks - 1)](*inputs, starts, y, ends, dtsum, length, dim, n,
                                                      chunk_len, n_chunks, SUMMARY=True, **common)
        _carry_kernel[(bsz, nblk)](A, h0, ends, dtsum, starts, dim, n, n_chunks, BLOCK_D=_BLOCK_D,
                                   BLOCK_N=common["BLOCK_N"], num_warps=4)
    _scan_chunk_kernel[(bsz, nblk, n_chunks)](*inputs, starts, y, hT, hT, length, dim, n, chunk_len, n_chunks,
                                              SUMMARY=False, **common)
    return y, hT


def scan_backward(dy, dhT, u, delta, A, B, C, D, z, delta_bias, h0, softplus):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0), all fp32, channel-last."""
    bsz, length, dim = u.shape
    n = A.shape[1]
    dev = u.device
    u, delta, z, B, C, dy = (_contig(t) for t in (u, delta, z, B, C, dy))
    A, D, bias, dhT = _fp32(A), _fp32(D), _fp32(delta_bias), _fp32(dhT)
    h0 = torch.zeros(bsz, dim, n, device=dev) if h0 is None else _fp32(h0)
    nblk = triton.cdiv(dim, _BLOCK_D)
    block_n = triton.next_power_of_2(n)
    n_ck = triton.cdiv(length, _CHECKPOINT)
    f32 = {"device": dev, "dtype": torch.float32}
    du, ddelta = torch.empty(bsz, length, dim, **f32), torch.empty(bsz, length, dim, **f32)
    dz = torch.empty(bsz, length, dim, **f32) if z is not None else None
    dB_part, dC_part = torch.zeros(bsz, nblk, length, n, **f32), torch.zeros(bsz, nblk, length, n, **f32)
    dA_part, dh0 = torch.empty(bsz, dim, n, **f32), torch.empty(bsz, dim, n, **f32)
    dD_part, dbias_part = torch.empty(bsz, dim, **f32), torch.empty(bsz, dim, **f32)
    checkpoints = torch.empty(bsz * nblk * max(n_ck, 1) * _BLOCK_D * block_n, **f32)
    scratch = torch.empty(bsz * nblk * (_CHECKPOINT + 1) * _BLOCK_D * block_n, **f32)
    dummy = u
    _scan_bwd_kernel[(bsz, nblk)](
        u, delta, dummy if z is None else z, B, C, A, dummy if D is None else D,
        dummy if bias is None else bias,
        h0, dy, dhT, du, ddelta, dummy if dz is None else dz, dB_part, dC_part, dA_part, dD_part, dbias_part,
        dh0, checkpoints, scratch, length, dim, n, n_ck, BLOCK_D=_BLOCK_D, BLOCK_N=block_n,
        CHECKPOINT=_CHECKPOINT, num_warps=4, **_flags(D, z, bias, softplus),
    )
    return (du, ddelta, dA_part.sum(0), dB_part.sum(1), dC_part.sum(1), dD_part.sum(0), dz,
            dbias_part.sum(0), dh0)


def state_update(state, x, dt, A, B, C, D, z, dt_bias, softplus):
    """One decoding step; `state` (batch, d_inner, N) fp32 contiguous is updated in place."""
    if state.dtype != torch.float32 or not state.is_contiguous():
        raise ValueError("the Triton state update needs a contiguous float32 state")
    bsz, dim, n = state.shape
    x, dt, z, B, C = (_contig(t) for t in (x, dt, z, B, C))
    A, D, bias = _fp32(A), _fp32(D), _fp32(dt_bias)
    y = torch.empty_like(x)
    dummy = x
    _state_update_kernel[(bsz, triton.cdiv(dim, _BLOCK_D))](
        state, x, dt, dummy if z is None else z, B, C, A, dummy if D is None else D,
        dummy if bias is None else bias, y, dim, n, BLOCK_D=_BLOCK_D, BLOCK_N=triton.next_power_of_2(n),
        num_warps=4, **_flags(D, z, bias, softplus),
    )
    return y
