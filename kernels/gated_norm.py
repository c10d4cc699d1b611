"""Mamba-2's gated RMSNorm, rmsnorm(y * silu(z)) over groups of channels, times a weight (mamba_ssm's
norm_before_gate=False, as transformers computes it).

In torch it is ~8 passes over (batch, L, d_inner) fp32 activations: at d_model 256 on a CPU about as
costly as the whole SSD scan. The CPU backend fuses it into one numba pass (cpu_gated_norm.py) when no
gradient is needed; otherwise, and on other backends, the torch version runs (autograd differentiates
it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backends import resolve


def gated_rms_norm_torch(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, group_size: int,
                         eps: float) -> torch.Tensor:
    """y, z (..., d), weight (d,) -> (..., d): normalised in fp32, cast to y's dtype before the weight."""
    h = (y.float() * F.silu(z.float())).unflatten(-1, (-1, group_size))  # (..., groups, group_size)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.flatten(-2).to(y.dtype)


def gated_rms_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, group_size: int, eps: float,
                   backend: str | None = None) -> torch.Tensor:
    """rmsnorm(y * silu(z)) per group of `group_size` channels, times weight; y, z (..., d), weight (d,).
    Returns (..., d) in the dtype torch's version gives (y's, promoted with weight's)."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (y, z, weight))
    if resolve(backend, y.device) == "cpu" and not needs_grad:
        from .cpu_gated_norm import gated_rms_norm as fused

        return fused(y, z, weight, group_size, eps)
    return gated_rms_norm_torch(y, z, weight, group_size, eps)
