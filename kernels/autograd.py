"""One autograd Function for every fused backend: the backend supplies a channel-last forward and a
backward kernel, this glues them to torch so gradients never go through a Python loop over L."""

from __future__ import annotations

import torch


class SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, impl, softplus, u, delta, A, B, C, D, z, delta_bias, h0):
        ctx.impl, ctx.softplus = impl, softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0)
        return impl.scan_forward(u, delta, A, B, C, D, z, delta_bias, h0, softplus)

    @staticmethod
    def backward(ctx, dy, dhT):
        inputs = ctx.saved_tensors
        grads = ctx.impl.scan_backward(dy, dhT, *inputs, ctx.softplus)
        wanted = ctx.needs_input_grad[2:]
        return None, None, *(
            g.to(x.dtype) if need and x is not None else None
            for g, x, need in zip(grads, inputs, wanted, strict=True)
        )


def scan(impl, softplus, u, delta, A, B, C, D, z, delta_bias, h0):
    """Run `impl`'s fused scan, through the autograd Function only when a gradient is wanted."""
    args = (u, delta, A, B, C, D, z, delta_bias, h0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return SelectiveScan.apply(impl, softplus, *args)
    return impl.scan_forward(*args, softplus)
