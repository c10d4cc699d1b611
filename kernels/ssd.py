"""Mamba-2 SSD kernels behind one signature: `ssd_scan` (prefill, training) and `ssd_state_update`
(one decoding step), dispatched to the same backends as the Mamba-1 scan:

- "reference": the chunked torch scan (ssd_reference.py), differentiated by autograd;
- "cpu": fused numba loops (ssd_cpu.py), with a numba reverse-scan backward;
- "triton": chunked SSD kernels (ssd_triton.py); backward by autograd through the chunked torch scan.

The fused backends go through the Mamba-1 scan's autograd Function (kernels/autograd.py), which hands
its option argument to the backend untouched: here an `SSDOptions`.
"""

from __future__ import annotations

import importlib

import torch

from .autograd import scan
from .backends import resolve
from .ssd_reference import NO_LIMIT, SSDOptions

_MODULES = {"reference": "ssd_reference", "cpu": "ssd_cpu", "triton": "ssd_triton"}
DEFAULT_CHUNK = 256  # mamba_ssm's and transformers' default


def _implementation(backend: str | None, device: torch.device) -> tuple[str, object]:
    name = resolve(backend, device)
    return name, importlib.import_module(f".{_MODULES[name]}", __package__)


def _check_shapes(x, dt, A, B, C, initial_state) -> None:
    batch, length, heads, headdim = x.shape
    groups, n = B.shape[2], B.shape[3]
    ok = (dt.shape == (batch, length, heads) and A.shape == (heads,) and heads % groups == 0
          and B.shape == (batch, length, groups, n) and C.shape == B.shape
          and (initial_state is None or initial_state.shape == (batch, heads, headdim, n)))
    if not ok:
        state = None if initial_state is None else tuple(initial_state.shape)
        raise ValueError(
            f"ssd_scan shapes: x {tuple(x.shape)}, dt {tuple(dt.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}, initial_state {state}; want x (batch, L, nheads, "
            "headdim), dt (batch, L, nheads), A (nheads,), B, C (batch, L, ngroups, N) with ngroups dividing "
            "nheads, state (batch, nheads, headdim, N)")


def ssd_scan(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True, initial_state=None,
             chunk_size=DEFAULT_CHUNK, dt_limit=NO_LIMIT, backend=None):
    """The Mamba-2 scan over a sequence, continuing from `initial_state` (None: zeros):

        dt_t = clamp(softplus(dt_t + dt_bias), *dt_limit),  h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,
        y_t = (h_t C_t + D x_t) * silu(z_t)

    x, z (batch, L, nheads, headdim); dt (batch, L, nheads); A, D, dt_bias (nheads,); B, C (batch, L,
    ngroups, N); state (batch, nheads, headdim, N) fp32. Any of them may be a strided view (the model
    passes slices of one projection). `chunk_size` is the block length of the chunked algorithms
    (reference, triton): it changes rounding, never the result. Returns (y in x's dtype, final state
    fp32); accumulation is fp32 in every backend, and both outputs are differentiable."""
    _check_shapes(x, dt, A, B, C, initial_state)
    if x.shape[1] == 0:  # nothing to scan: the state passes through
        batch, _, heads, headdim = x.shape
        state = x.new_zeros(batch, heads, headdim, B.shape[3]) if initial_state is None else initial_state
        return torch.empty_like(x), state.float().clone()
    name, impl = _implementation(backend, x.device)
    options = SSDOptions(bool(dt_softplus), (float(dt_limit[0]), float(dt_limit[1])), int(chunk_size))
    args = (x, dt, A, B, C, D, z, dt_bias, initial_state)
    if name == "reference":
        return impl.scan_forward(*args, options)
    return scan(impl, options, *args)


def ssd_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True,
                     dt_limit=NO_LIMIT, backend=None):
    """One step of the recurrence, for decoding: x, z (batch, nheads, headdim); dt (batch, nheads); B, C
    (batch, ngroups, N). Updates `state` (batch, nheads, headdim, N, fp32, contiguous) in place and
    returns y (batch, nheads, headdim) in x's dtype."""
    _, impl = _implementation(backend, x.device)
    options = SSDOptions(bool(dt_softplus), (float(dt_limit[0]), float(dt_limit[1])))
    return impl.state_update(state, x, dt, A, B, C, D, z, dt_bias, options)
