"""Plain-torch versions of the kernels: the oracle the fused backends are tested against.

The scan goes one time step at a time; autograd works through it, but its graph grows with L, so it is
for tests and tiny inputs. The convolution is cheap in torch and is also what runs under autograd."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _discretised_dt(delta: torch.Tensor, bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    dt = delta.float()
    if bias is not None:
        dt = dt + bias.float()
    return F.softplus(dt) if softplus else dt


def _gate(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    if D is not None:
        y = y + x.float() * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                   initial_state=None):
    """Layout as mamba_ssm: u, delta, z (batch, d_inner, L); B, C (batch, N, L). Returns (y, final_state)."""
    batch, dim, length = u.shape
    dt = _discretised_dt(delta.transpose(1, 2), delta_bias, delta_softplus)  # (batch, L, d_inner)
    x = u.transpose(1, 2).float()
    Bt, Ct, A = B.float().transpose(1, 2), C.float().transpose(1, 2), A.float()
    if initial_state is None:
        h = u.new_zeros(batch, dim, A.shape[1], dtype=torch.float32)
    else:
        h = initial_state.float()
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * Bt[:, t, None, :]
        ys.append((h * Ct[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, dim)
    y = _gate(y, x, D, None if z is None else z.transpose(1, 2))
    return y.transpose(1, 2).to(u.dtype), h


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True):
    """One decoding step: x, dt, z (batch, d_inner); B, C (batch, N); `state` (batch, d_inner, N) is
    updated in place. Returns y (batch, d_inner) in x's dtype."""
    dt = _discretised_dt(dt, dt_bias, dt_softplus)
    dBx = (dt * x.float())[..., None] * B.float()[:, None]
    h = torch.exp(dt[..., None] * A.float()) * state.float() + dBx
    state.copy_(h)
    y = (h * C.float()[:, None]).sum(-1)
    return _gate(y, x, D, z).to(x.dtype)


def causal_conv1d(x, weight, bias, state):
    """silu(depthwise causal conv) of x (batch, L, d_inner) after `state` (batch, k - 1, d_inner), with
    weight (d_inner, k), as k shifted multiply-adds on the channel-last layout (F.conv1d would want
    channels-first), accumulated in fp32. Returns the output in x's dtype and the new state (the last
    k - 1 inputs)."""
    length, k = x.shape[1], weight.shape[1]
    xpad = torch.cat([state.to(x.dtype), x], dim=1)
    xf, w = xpad.float(), weight.t().float()
    out = xf[:, :length] * w[0] if bias is None else torch.addcmul(bias.float(), xf[:, :length], w[0])
    for j in range(1, k):
        out = out.addcmul_(xf[:, j : j + length], w[j])
    return F.silu(out).to(x.dtype), xpad[:, length:].clone()
