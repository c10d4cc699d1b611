"""Selective-scan kernels: torch reference, CPU fast path, Triton GPU.

`selective_scan` and `selective_state_update` take mamba_ssm's layout and dispatch to a backend
(`causal_conv1d`, the convolution before the scan, too):

- "reference": plain torch, one step at a time; the oracle for tests.
- "cpu": fused numba loops (see cpu_scan.py), differentiable through a reverse-scan backward kernel.
- "triton": GPU kernels (see triton_scan.py); runs on CPU tensors under TRITON_INTERPRET=1, for tests.

Mamba-2's SSD scan and decoding step, `ssd_scan` and `ssd_state_update`, use the same backends (ssd.py),
as does its gated RMSNorm, `gated_rms_norm` (gated_norm.py).
"""

from __future__ import annotations

import importlib

import torch

from . import reference
from .autograd import scan
from .backends import BACKENDS, available_backends, default_backend, resolve, triton_version
from .gated_norm import gated_rms_norm
from .ssd import ssd_scan, ssd_state_update

_MODULES = {"cpu": "cpu_scan", "triton": "triton_scan"}


def _backend_module(backend: str | None, device: torch.device):
    """The implementation module of a fused backend; None for the reference."""
    name = resolve(backend, device)
    return None if name == "reference" else importlib.import_module(f".{_MODULES[name]}", __name__)


def _check_shapes(u, delta, A, B, C):
    batch, dim, length = u.shape
    n = A.shape[-1]
    if delta.shape != u.shape or A.shape != (dim, n) or B.shape != (batch, n, length) or C.shape != B.shape:
        raise ValueError(
            f"selective_scan shapes: u, delta {tuple(u.shape)} {tuple(delta.shape)}, A {tuple(A.shape)}, "
            f"B, C {tuple(B.shape)} {tuple(C.shape)}; want (batch, d_inner, L), (d_inner, N), (batch, N, L)"
        )


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                   initial_state=None, return_final_state=True, backend=None):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t,  y_t = (C_t . h_t + D u_t) * silu(z_t),
    dt = softplus(delta + delta_bias). u, delta, z: (batch, d_inner, L); A: (d_inner, N);
    B, C: (batch, N, L); D, delta_bias: (d_inner,); initial/final state: (batch, d_inner, N) fp32.

    Returns (y in u's dtype, final_state or None). Accumulation is fp32 in every backend.
    """
    _check_shapes(u, delta, A, B, C)
    impl = _backend_module(backend, u.device)
    if impl is None:
        y, h = reference.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    else:
        # The fused kernels work channel-last; for tensors that are views of channel-last storage (as
        # the model passes them) these transposes cost nothing.
        y, h = scan(impl, delta_softplus, u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                    C.transpose(1, 2), D, None if z is None else z.transpose(1, 2), delta_bias, initial_state)
        y = y.transpose(1, 2)
    return y, (h if return_final_state else None)


def causal_conv1d(x, weight, bias=None, state=None, backend=None):
    """silu(depthwise causal convolution), channel-last: x (batch, L, d_inner) continues after `state`
    (batch, k - 1, d_inner; None = zeros), weight (d_inner, k), bias (d_inner,). Returns the output in x's
    dtype and the new state. The CPU backend fuses it into one pass when no gradient is needed."""
    if state is None:
        state = x.new_zeros(x.shape[0], weight.shape[1] - 1, x.shape[2])
    tensors = (x, weight, bias, state)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if resolve(backend, x.device) == "cpu" and not needs_grad:
        from .cpu_conv import causal_conv1d_silu

        return causal_conv1d_silu(x, weight, bias, state)
    return reference.causal_conv1d(x, weight, bias, state)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True,
                           backend=None):
    """One recurrence step for decoding: x, dt, z (batch, d_inner); B, C (batch, N). Updates `state`
    (batch, d_inner, N, fp32) in place and returns y (batch, d_inner) in x's dtype."""
    impl = _backend_module(backend, x.device)
    if impl is None:
        return reference.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return impl.state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


__all__ = [
    "BACKENDS", "available_backends", "causal_conv1d", "default_backend", "gated_rms_norm", "selective_scan",
    "selective_state_update", "ssd_scan", "ssd_state_update", "triton_version",
]
