"""Run transformers' own Mamba-family and hybrid models (Mamba, Falcon-Mamba, Jamba, Zamba; Mamba-2, Bamba,
Falcon-H1, Zamba2, GraniteMoeHybrid, Nemotron-H, ...) with their SSM mixers on our kernels.

transformers calls its mixers' convolution and scan through module-level functions of each
`modeling_<name>.py`, named and shaped like mamba_ssm's (causal_conv1d_fn, mamba2_chunk_scan, ...), and
looks them up in the module's globals at every call. `ssm_kernels(model)` swaps those globals for adapters
to mambapoc.kernels for the length of a `with` block; nothing in the model object changes. Which modules to
patch comes from the classes of the model's submodules, so any model built on these names is covered.

Layouts, as transformers passes them (b batch, L tokens, d channels, h heads, p head dim, g groups, n state):
    causal_conv1d_fn      x (b, d, L), weight (d, k)          causal_conv1d_update  conv_state (b, d, >= k-1)
    mamba_selective_scan  u, dt, z (b, d, L), A (d, n), B, C (b, n, L); state (b, d, n)
    mamba2_chunk_scan     x (b, L, h, p), dt (b, L, h), A, D, dt_bias (h,), B, C (b, L, g, n); state (b, h, p, n)
    mamba2_selective_state_update  x (b, h, p), with dt, A, D, dt_bias expanded over p (and n) from per-head values
Our kernels take the convolution channel-last (b, L, d) and the Mamba-2 step per head; the adapters convert.

Every adapter calls the original function, with the arguments it was given, whenever the call is outside
what our kernels do (another activation, packed sequences, per-channel values where we need per-head ones,
a gradient through an in-place state update, ...), so results are transformers' in every case. Outputs
follow transformers' torch functions: the same shapes and dtypes, states updated in place.

The swap is process-wide while the block runs: other models of the same classes use our kernels too.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import sys
import weakref
from collections.abc import Callable, Iterator

import torch

from mambapoc import kernels  # looked up at call time (kernels.ssd_scan, ...), so tests can count calls

_FALLBACK = object()  # what an adapter body returns to hand the call to the original function
_SILU = ("silu", "swish")
# Options of transformers' torch-only Mamba-1 scan: other algorithms for the same recurrence.
_SAME_RESULT = ("use_mambapy", "use_associative_scan")


def _extra_options(kwargs: dict) -> bool:
    """Whether the call carries a keyword we do not implement (seq_idx, cu_seqlens, a z the torch version
    would ignore, ...). Absent-valued ones (None, False) are what every model passes, and are fine."""
    return any(v is not None and v is not False for k, v in kwargs.items() if k not in _SAME_RESULT)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _shape_ok(t, *shape) -> bool:
    return t is None or tuple(t.shape) == shape


def _collapse(t: torch.Tensor | None, dims: int):
    """`t` without its last `dims` dimensions when it is constant along them (an expand() of per-head
    values, as the models pass them); _FALLBACK when it truly varies there."""
    if t is None:
        return None
    first = t[(..., *([0] * dims))]
    if all(s == 0 for s in t.stride()[-dims:]) or torch.equal(t, first[(..., *([None] * dims))].expand_as(t)):
        return first
    return _FALLBACK


def _float32_state(state: torch.Tensor) -> torch.Tensor:
    # The fused decoding steps update a contiguous fp32 state; anything else (a per-head view, a bf16
    # cache) is updated through a copy that is written back.
    return state if state.dtype == torch.float32 and state.is_contiguous() else state.float().contiguous()


def _causal_conv1d_fn(backend, hidden_states, weight, bias=None, activation=None, **kwargs):
    if activation not in _SILU or _extra_options(kwargs) or hidden_states.dim() != 3 or weight.dim() != 2:
        return _FALLBACK
    y, _ = kernels.causal_conv1d(hidden_states.transpose(1, 2), weight, bias, backend=backend)
    # Like causal-conv1d, the output's memory layout follows the input's (channel-last in the mixers).
    return y.transpose(1, 2) if hidden_states.stride(1) == 1 else y.transpose(1, 2).contiguous()


def _causal_conv1d_update(backend, hidden_states, conv_state, weight, bias=None, activation=None, **kwargs):
    k, keep = weight.shape[-1], conv_state.shape[-1]
    if (activation not in _SILU or _extra_options(kwargs) or keep < k - 1 or hidden_states.dim() != 3
            or _needs_grad(hidden_states, conv_state, weight, bias)):
        return _FALLBACK
    window = torch.cat([conv_state, hidden_states.to(conv_state.dtype)], dim=-1)
    # transformers' conv_state holds the last k inputs, our kernel wants the last k - 1.
    past = conv_state[:, :, keep - (k - 1):].transpose(1, 2)
    y, _ = kernels.causal_conv1d(hidden_states.transpose(1, 2), weight, bias, past, backend=backend)
    conv_state.copy_(window[:, :, -keep:])
    return y.transpose(1, 2).contiguous()


def _mamba_selective_scan(backend, hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False, **kwargs):
    u = hidden_states
    if _extra_options(kwargs) or u.dim() != 3 or A.dim() != 2 or B.dim() != 3 or A.is_complex():
        return _FALLBACK  # grouped (b, g, n, L) or input-independent (d, n) B and C are mamba_ssm-only
    b, d, length = u.shape
    n = A.shape[1]
    if not (length and _shape_ok(dt, b, d, length) and _shape_ok(A, d, n) and _shape_ok(B, b, n, length)
            and _shape_ok(C, b, n, length) and _shape_ok(D, d) and _shape_ok(z, b, d, length)
            and _shape_ok(delta_bias, d)):
        return _FALLBACK
    # The torch function answers in the dtype u * D * silu(z) promotes to (fp32 with the fp32 D the models
    # pass); our kernel answers in u's, so u goes in as that dtype and y never passes through bf16.
    dtype = u.dtype
    for t in (D, z):
        dtype = dtype if t is None else torch.promote_types(dtype, t.dtype)
    y, state = kernels.selective_scan(u.to(dtype), dt, A, B, C, D, z, delta_bias, delta_softplus, backend=backend)
    return (y, state) if return_last_state else y


def _mamba_selective_state_update(backend, state, hidden_states, dt, A, B, C, D=None, dt_bias=None,
                                  dt_softplus=False, z=None, **kwargs):
    x = hidden_states
    if _extra_options(kwargs) or x.dim() != 2 or state.dim() != 3 or _needs_grad(state, x, dt, A, B, C, D, z):
        return _FALLBACK
    b, d = x.shape
    n = state.shape[2]
    if not (_shape_ok(state, b, d, n) and _shape_ok(dt, b, d) and _shape_ok(A, d, n) and _shape_ok(B, b, n)
            and _shape_ok(C, b, n) and _shape_ok(D, d) and _shape_ok(z, b, d) and _shape_ok(dt_bias, d)):
        return _FALLBACK  # multi-head (b, h, p, n) states are mamba_ssm-only here
    work = _float32_state(state)
    y = kernels.selective_state_update(work, x, dt, A, B, C, D, z, dt_bias, dt_softplus, backend=backend)
    if work is not state:
        state.copy_(work)
    return y


def _mamba2_chunk_scan(backend, hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None,
                       initial_states=None, dt_softplus=False, dt_limit=(0.0, math.inf),
                       return_final_states=False, **kwargs):
    x = hidden_states
    # Without softplus the torch function still clamps dt at dt_limit[0] = 0; our kernels clamp only a
    # real limit. Every model asks for softplus, so that case simply stays on transformers' code.
    if _extra_options(kwargs) or not dt_softplus or x.dim() != 4 or B.dim() != 4:
        return _FALLBACK
    b, length, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    if not (length and h % g == 0 and _shape_ok(dt, b, length, h) and _shape_ok(A, h)
            and _shape_ok(B, b, length, g, n) and _shape_ok(C, b, length, g, n) and _shape_ok(D, h)
            and _shape_ok(dt_bias, h) and _shape_ok(initial_states, b, h, p, n)):
        return _FALLBACK
    # The torch function works and answers in fp32 whatever the model's dtype; so do we.
    y, state = kernels.ssd_scan(x.float(), dt, A, B, C, D, None, dt_bias, True, initial_states, int(chunk_size),
                                tuple(dt_limit), backend=backend)
    return (y, state) if return_final_states else y


def _mamba2_selective_state_update(backend, state, hidden_states, dt, A, B, C, D=None, dt_bias=None,
                                   dt_softplus=False, z=None, **kwargs):
    x = hidden_states
    if (_extra_options(kwargs) or x.dim() != 3 or state.dim() != 4 or B.dim() != 3
            or _needs_grad(state, x, dt, A, B, C, D, z, dt_bias)):
        return _FALLBACK
    b, h, p = x.shape
    g, n = B.shape[1], B.shape[2]
    if not (h % g == 0 and _shape_ok(state, b, h, p, n) and _shape_ok(dt, b, h, p) and _shape_ok(A, h, p, n)
            and _shape_ok(B, b, g, n) and _shape_ok(C, b, g, n) and _shape_ok(D, h, p)
            and _shape_ok(dt_bias, h, p) and _shape_ok(z, b, h, p)):
        return _FALLBACK
    # mamba_ssm's signature lets dt, A, D and dt_bias vary over p (and n); Mamba-2 has one value per head.
    per_head = [_collapse(dt, 1), _collapse(A, 2), _collapse(D, 1), _collapse(dt_bias, 1)]
    if any(t is _FALLBACK for t in per_head):
        return _FALLBACK
    dt1, A1, D1, bias1 = per_head
    work = _float32_state(state)
    y = kernels.ssd_state_update(work, x, dt1, A1, B, C, D1, z, bias1, dt_softplus, backend=backend)
    if work is not state:
        state.copy_(work)
    return y


_BODIES: dict[str, Callable] = {
    "causal_conv1d_fn": _causal_conv1d_fn,
    "causal_conv1d_update": _causal_conv1d_update,
    "mamba_selective_scan": _mamba_selective_scan,
    "mamba_selective_state_update": _mamba_selective_state_update,
    "mamba2_chunk_scan": _mamba2_chunk_scan,
    "mamba2_selective_state_update": _mamba2_selective_state_update,
}
# The parameters a call is bound against: the bodies' own, without the backend.
_SIGNATURES = {
    name: inspect.signature(body).replace(parameters=list(inspect.signature(body).parameters.values())[1:])
    for name, body in _BODIES.items()
}


def _adapter(name: str, original: Callable, backend: str | None) -> Callable:
    body, signature = _BODIES[name], _SIGNATURES[name]

    @functools.wraps(original)
    def adapter(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError:  # a call shaped unlike mamba_ssm's: let the original answer it (or raise)
            return original(*args, **kwargs)
        out = body(backend, *args, **kwargs)
        return original(*args, **kwargs) if out is _FALLBACK else out

    adapter.mambapoc_original = original
    return adapter


def _modeling_modules(model: torch.nn.Module) -> list:
    """The Python modules that define the model's layer classes (their globals are what forward() reads)."""
    names = sorted({type(m).__module__ for m in model.modules()})
    return [sys.modules[n] for n in names if n in sys.modules]


def _targets(model: torch.nn.Module) -> Iterator[tuple[object, str]]:
    for module in _modeling_modules(model):
        for name in _BODIES:
            if callable(vars(module).get(name)):
                yield module, name


def kernel_functions(model: torch.nn.Module) -> list[str]:
    """The functions `ssm_kernels` swaps for this model, as "<model module>.<function>" (e.g.
    "bamba.mamba2_chunk_scan"); empty for a model without SSM mixers."""
    return [f"{module.__name__.rsplit('.', 1)[-1].removeprefix('modeling_')}.{name}"
            for module, name in _targets(model)]


def _model_targets(model: torch.nn.Module) -> list[tuple[object, str]]:
    """_targets, worked out once per model: entering the block then costs a few lookups and attribute
    writes, not a walk over the model, on every decoding step."""
    if model not in _TARGETS:
        _TARGETS[model] = list(_targets(model))
    return _TARGETS[model]


def _adapter_for(name: str, original: Callable, backend: str | None) -> Callable:
    per_backend = _ADAPTERS.setdefault(original, {})
    if backend not in per_backend:
        per_backend[backend] = _adapter(name, original, backend)
    return per_backend[backend]


_TARGETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ADAPTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # original function -> {backend: adapter}


@contextlib.contextmanager
def ssm_kernels(model: torch.nn.Module, backend: str | None = None):
    """Within the block, the model's SSM mixers run on mambapoc.kernels (`backend` as there; None: the
    fastest for the tensors' device). The original functions are back when the block ends, however."""
    done = []
    try:
        for module, name in _model_targets(model):
            original = vars(module)[name]
            if hasattr(original, "mambapoc_original"):  # already swapped by an enclosing block
                continue
            setattr(module, name, _adapter_for(name, original, backend))
            done.append((module, name, original))
        yield
    finally:
        for module, name, original in reversed(done):
            setattr(module, name, original)
