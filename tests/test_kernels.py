"""Every fused scan backend against the plain-torch reference scan.

The CPU backend always runs. The Triton backend runs where it can: on a CUDA machine, or on CPU tensors
under TRITON_INTERPRET=1, which test_kernels_triton.py arranges in a subprocess (the variable must be
set before triton is first imported).
"""

import os
from importlib.util import find_spec

import pytest
import torch

from mambapoc import kernels

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
FUSED = ["cpu"]
if find_spec("triton") is not None and (INTERPRETING or torch.cuda.is_available()):
    FUSED.append("triton")

# mamba_ssm's selective-scan test tolerances.
TOL = {torch.float32: {"rtol": 6e-4, "atol": 2e-3}, torch.bfloat16: {"rtol": 3e-2, "atol": 5e-2}}
GRAD_NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]


def scan_inputs(backend, batch=2, dim=40, n=5, length=70, dtype=torch.float32, seed=0, softplus=True):
    """Random scan arguments in mamba_ssm's (batch, d_inner, L) layout, on the backend's device; d_inner
    is deliberately not a multiple of any kernel block size."""
    g = torch.Generator().manual_seed(seed)
    device = "cuda" if backend == "triton" and not INTERPRETING else "cpu"

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(device)

    # Without softplus, delta + delta_bias is the step itself and must be positive.
    delta = r(batch, dim, length, scale=0.5, shift=-1.0) if softplus else r(batch, dim, length).abs() * 0.1
    bias = r(dim, scale=0.5) if softplus else r(dim).abs() * 0.1
    return {
        "u": r(batch, dim, length).to(dtype), "delta": delta.to(dtype), "A": -r(dim, n).abs() * 2 - 0.2,
        "B": r(batch, n, length).to(dtype), "C": r(batch, n, length).to(dtype), "D": r(dim),
        "z": r(batch, dim, length).to(dtype), "delta_bias": bias, "initial_state": r(batch, dim, n),
        "delta_softplus": softplus,
    }


def check_against_reference(backend, args):
    y_ref, h_ref = kernels.selective_scan(**args, backend="reference")
    y, h = kernels.selective_scan(**args, backend=backend)
    assert y.dtype == args["u"].dtype and h.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref.float(), **TOL[args["u"].dtype])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("n", [4, 16])
def test_scan_matches_reference(backend, n):
    check_against_reference(backend, scan_inputs(backend, n=n))


@pytest.mark.parametrize("backend", FUSED)
def test_scan_without_optional_inputs_or_softplus(backend):
    args = scan_inputs(backend, softplus=False)
    args.update(D=None, z=None, initial_state=None)
    check_against_reference(backend, args)
    args.update(delta_bias=None)
    check_against_reference(backend, args)


@pytest.mark.parametrize("backend", FUSED)
def test_scan_bf16_inputs(backend):
    check_against_reference(backend, scan_inputs(backend, length=30, dtype=torch.bfloat16))


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("optional", [True, False])
def test_scan_gradients_match_reference_autograd(backend, optional):
    args = scan_inputs(backend, length=80, softplus=optional)  # longer than one 64-step checkpoint interval
    if not optional:
        args.update(D=None, z=None, delta_bias=None)
    names = [k for k in GRAD_NAMES if args[k] is not None]
    ref = {**args, **{k: args[k].clone().requires_grad_() for k in names}}
    ours = {**args, **{k: args[k].clone().requires_grad_() for k in names}}
    y_ref, h_ref = kernels.selective_scan(**ref, backend="reference")
    y, h = kernels.selective_scan(**ours, backend=backend)
    gy, gh = torch.randn_like(y_ref), torch.randn_like(h_ref)
    ((y_ref * gy).sum() + (h_ref * gh).sum()).backward()
    ((y * gy).sum() + (h * gh).sum()).backward()
    for k in names:
        torch.testing.assert_close(ours[k].grad, ref[k].grad, **TOL[torch.float32],
                                   msg=lambda m, k=k: f"d{k}: {m}")


def test_cpu_scan_gradients_one_thread_several_blocks(monkeypatch):
    """One thread walks a full and then a partial channel block (d_inner 100 = 64 + 36)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    args = scan_inputs("cpu", batch=1, dim=100, length=20)
    ref = {**args, **{k: args[k].clone().requires_grad_() for k in GRAD_NAMES}}
    ours = {**args, **{k: args[k].clone().requires_grad_() for k in GRAD_NAMES}}
    for a, backend in ((ref, "reference"), (ours, "cpu")):
        y, h = kernels.selective_scan(**a, backend=backend)
        (y.sum() + h.sum()).backward()
    for k in GRAD_NAMES:
        torch.testing.assert_close(ours[k].grad, ref[k].grad, **TOL[torch.float32])


@pytest.mark.parametrize("backend", FUSED)
def test_scan_in_two_pieces_equals_one(backend):
    args = scan_inputs(backend)
    seq = ("u", "delta", "B", "C", "z")
    y, h = kernels.selective_scan(**args, backend=backend)
    y1, h1 = kernels.selective_scan(**{**args, **{k: args[k][..., :30] for k in seq}}, backend=backend)
    y2, h2 = kernels.selective_scan(**{**args, **{k: args[k][..., 30:] for k in seq}, "initial_state": h1},
                                    backend=backend)
    torch.testing.assert_close(torch.cat([y1, y2], -1), y, **TOL[torch.float32])
    torch.testing.assert_close(h2, h, **TOL[torch.float32])


@pytest.mark.skipif("triton" not in FUSED, reason="Triton needs CUDA or TRITON_INTERPRET=1")
def test_triton_chunked_scan_matches_reference():
    """The three-launch path the GPU takes when batch x channel blocks cannot fill it, forced here."""
    from mambapoc.kernels import triton_scan

    args = scan_inputs("triton", length=45)
    y_ref, h_ref = kernels.selective_scan(**args, backend="reference")
    cl = {k: (v.transpose(1, 2) if k in ("u", "delta", "B", "C", "z") else v) for k, v in args.items()}
    y, h = triton_scan.scan_forward(cl["u"], cl["delta"], cl["A"], cl["B"], cl["C"], cl["D"], cl["z"],
                                    cl["delta_bias"], cl["initial_state"], True, chunk_len=16)
    torch.testing.assert_close(y.transpose(1, 2), y_ref, **TOL[torch.float32])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_state_update_is_one_scan_step(backend):
    args = scan_inputs(backend, length=1)
    y_scan, h_scan = kernels.selective_scan(**args, backend="reference")
    state = args["initial_state"].clone()
    step = {k: args[k][..., 0] for k in ("u", "delta", "B", "C", "z")}
    y = kernels.selective_state_update(state, step["u"], step["delta"], args["A"], step["B"], step["C"],
                                       args["D"], step["z"], args["delta_bias"], True, backend=backend)
    torch.testing.assert_close(y, y_scan[..., 0], **TOL[torch.float32])
    torch.testing.assert_close(state, h_scan, **TOL[torch.float32])


@pytest.mark.parametrize("length", [2, 50])  # shorter and longer than the kernel's state
@pytest.mark.parametrize("bias", [True, False])
def test_cpu_causal_conv_matches_reference(length, bias):
    g = torch.Generator().manual_seed(0)
    x, state = torch.randn(2, length, 37, generator=g), torch.randn(2, 3, 37, generator=g)
    weight, b = torch.randn(37, 4, generator=g), torch.randn(37, generator=g) if bias else None
    out, new_state = kernels.causal_conv1d(x, weight, b, state, backend="cpu")
    ref, ref_state = kernels.causal_conv1d(x, weight, b, state, backend="reference")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    torch.testing.assert_close(new_state, ref_state)
    torch.testing.assert_close(new_state, torch.cat([state, x], 1)[:, -3:])


def test_backend_selection():
    assert kernels.available_backends()[:2] == ["reference", "cpu"]
    assert kernels.default_backend("cpu") == "cpu"
    assert kernels.default_backend("cuda") == ("triton" if kernels.triton_version() else "reference")
    args = scan_inputs("cpu", length=3)
    with pytest.raises(ValueError, match="unknown scan backend"):
        kernels.selective_scan(**args, backend="cuda")
    with pytest.raises(ValueError, match="shapes"):
        kernels.selective_scan(**{**args, "B": args["B"][:, :2]}, backend="cpu")
    y, h = kernels.selective_scan(**args, return_final_state=False)
    assert h is None and y.shape == args["u"].shape
