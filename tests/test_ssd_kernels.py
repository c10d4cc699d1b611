"""The Mamba-2 SSD kernels: the chunked torch reference against the step-by-step recurrence, and every
fused backend against the reference, forward, backward and decoding step.

The CPU backend always runs. The Triton backend runs on a CUDA machine, or on CPU tensors under
TRITON_INTERPRET=1, which the last test arranges in a subprocess (the variable must be set before triton
is first imported).
"""

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from mambapoc import kernels

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
FUSED = ["cpu"]
if find_spec("triton") is not None and (INTERPRETING or torch.cuda.is_available()):
    FUSED.append("triton")

TOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-4}, torch.bfloat16: {"rtol": 3e-2, "atol": 5e-2}}
GRAD_TOL = {"rtol": 1e-4, "atol": 2e-4}
ARGS = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"]


def ssd_inputs(backend="cpu", batch=2, length=70, heads=4, headdim=40, groups=2, n=5, dtype=torch.float32,
               seed=0, softplus=True):
    """Random scan arguments on the backend's device. headdim 40 is not a multiple of any kernel block,
    and 70 steps are several chunks of the sizes the tests use."""
    g = torch.Generator().manual_seed(seed)
    device = "cuda" if backend == "triton" and not INTERPRETING else "cpu"

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(device)

    # Without softplus, dt + dt_bias is the step itself and must be positive.
    dt = r(batch, length, heads, scale=0.5, shift=-1.0) if softplus else r(batch, length, heads).abs() * 0.1
    bias = r(heads, scale=0.5) if softplus else r(heads).abs() * 0.1
    return {
        "x": r(batch, length, heads, headdim).to(dtype), "dt": dt.to(dtype), "A": -r(heads).abs() * 2 - 0.2,
        "B": r(batch, length, groups, n).to(dtype), "C": r(batch, length, groups, n).to(dtype), "D": r(heads),
        "z": r(batch, length, heads, headdim).to(dtype), "dt_bias": bias,
        "initial_state": r(batch, heads, headdim, n),
        "dt_softplus": softplus,
    }


def oracle(args):
    """The step-by-step recurrence on the same arguments."""
    kept = {k: v for k, v in args.items() if k not in ("chunk_size", "backend")}
    return kernels.ssd_reference.ssd_scan_recurrent(**kept)


def check(backend, args, tol=None):
    y_ref, h_ref = oracle(args)
    y, h = kernels.ssd_scan(**args, backend=backend)
    assert y.dtype == args["x"].dtype and h.dtype == torch.float32 and y.shape == args["x"].shape
    torch.testing.assert_close(y.float(), y_ref.float(), **(tol or TOL[args["x"].dtype]))
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64, 256])
def test_chunked_reference_equals_recurrence(chunk_size):
    check("reference", {**ssd_inputs(), "chunk_size": chunk_size})


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("n", [5, 16])
def test_scan_matches_reference(backend, n):
    check(backend, {**ssd_inputs(backend, n=n), "chunk_size": 32})


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_scan_without_optional_inputs_or_softplus(backend):
    args = ssd_inputs(backend, softplus=False, groups=1)
    args.update(D=None, z=None, initial_state=None, chunk_size=16)
    check(backend, args)
    args.update(dt_bias=None)
    check(backend, args)


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_scan_dt_limit(backend):
    args = {**ssd_inputs(backend), "dt_limit": (0.2, 0.5), "chunk_size": 32}
    check(backend, args)
    y, _ = kernels.ssd_scan(**args, backend=backend)
    unclamped, _ = kernels.ssd_scan(**{**args, "dt_limit": (0.0, float("inf"))}, backend=backend)
    assert (y - unclamped).abs().max() > 1e-2  # the limit does bite on these inputs


@pytest.mark.parametrize("backend", FUSED)
def test_scan_bf16_inputs(backend):
    check(backend, {**ssd_inputs(backend, length=30, dtype=torch.bfloat16), "chunk_size": 16})


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_scan_reads_strided_views(backend):
    """The model passes x, B and C as slices of the convolution's (batch, L, conv_dim) output."""
    args = ssd_inputs(backend, heads=4, headdim=8, groups=2, n=16)
    xBC = torch.cat([args["x"].flatten(2), args["B"].flatten(2), args["C"].flatten(2)], dim=-1)
    x, B, C = torch.split(xBC, [32, 32, 32], dim=-1)
    views = {"x": x.unflatten(-1, (4, 8)), "B": B.unflatten(-1, (2, 16)), "C": C.unflatten(-1, (2, 16))}
    assert not views["x"].is_contiguous()
    y, h = kernels.ssd_scan(**{**args, **views, "chunk_size": 16}, backend=backend)
    y_ref, h_ref = oracle(args)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


def gradients(args, backend, names, scan=kernels.ssd_scan):
    """Gradients of a random projection of (y, final state) with respect to `names`."""
    leaves = {**args, **{k: args[k].clone().requires_grad_() for k in names}}
    y, h = scan(**leaves) if backend is None else scan(**leaves, backend=backend)
    g = torch.Generator().manual_seed(1)
    gy, gh = torch.randn(y.shape, generator=g).to(y.device), torch.randn(h.shape, generator=g).to(h.device)
    ((y * gy).sum() + (h * gh).sum()).backward()
    return {k: leaves[k].grad for k in names}


@pytest.mark.parametrize("optional", [True, False])
def test_reference_gradients_equal_recurrence_autograd(optional):
    args = {**ssd_inputs(length=40, softplus=optional), "dt_limit": (0.0, 0.6) if optional else (0.0, 9.0)}
    if not optional:
        args.update(D=None, z=None, dt_bias=None)
    names = [k for k in ARGS if args[k] is not None]
    ref = gradients(args, None, names, scan=kernels.ssd_reference.ssd_scan_recurrent)
    ours = gradients({**args, "chunk_size": 16}, "reference", names)
    for k in names:
        torch.testing.assert_close(ours[k], ref[k], **GRAD_TOL, msg=lambda m, k=k: f"d{k}: {m}")


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("optional", [True, False])
def test_scan_gradients_match_reference(backend, optional):
    # Longer than one 32-step checkpoint interval of the CPU backward; dt_limit clamps some steps.
    args = {**ssd_inputs(backend, length=80, softplus=optional), "chunk_size": 32,
            "dt_limit": (0.0, 0.6) if optional else (0.0, 9.0)}
    if not optional:
        args.update(D=None, z=None, dt_bias=None)
    names = [k for k in ARGS if args[k] is not None]
    ref, ours = gradients(args, "reference", names), gradients(args, backend, names)
    for k in names:
        torch.testing.assert_close(ours[k], ref[k], **GRAD_TOL, msg=lambda m, k=k: f"d{k}: {m}")


def test_cpu_scan_gradients_one_thread_several_blocks(monkeypatch):
    """One thread walks several channel blocks of several heads (headdim 100 = 32 + 32 + 32 + 4)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    args = ssd_inputs(batch=1, heads=2, headdim=100, groups=1, length=20)
    ref, ours = gradients(args, "reference", ARGS), gradients(args, "cpu", ARGS)
    for k in ARGS:
        torch.testing.assert_close(ours[k], ref[k], **GRAD_TOL, msg=lambda m, k=k: f"d{k}: {m}")


@pytest.mark.parametrize("backend", ["reference", *FUSED])
def test_scan_in_two_pieces_equals_one(backend):
    args = {**ssd_inputs(backend), "chunk_size": 16}
    seq = ("x", "dt", "B", "C", "z")
    y, h = kernels.ssd_scan(**args, backend=backend)
    y1, h1 = kernels.ssd_scan(**{**args, **{k: args[k][:, :30] for k in seq}}, backend=backend)
    y2, h2 = kernels.ssd_scan(**{**args, **{k: args[k][:, 30:] for k in seq}, "initial_state": h1},
                              backend=backend)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TOL[torch.float32])
    torch.testing.assert_close(h2, h, **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["reference", *FUSED])
@pytest.mark.parametrize("dt_limit", [(0.0, float("inf")), (0.2, 0.5)])
def test_state_update_is_one_scan_step(backend, dt_limit):
    args = {**ssd_inputs(backend, length=1), "dt_limit": dt_limit}
    y_scan, h_scan = oracle(args)
    state = args["initial_state"].clone()
    step = {k: args[k][:, 0] for k in ("x", "dt", "B", "C", "z")}
    y = kernels.ssd_state_update(state, step["x"], step["dt"], args["A"], step["B"], step["C"], args["D"],
                                 step["z"], args["dt_bias"], True, dt_limit, backend=backend)
    torch.testing.assert_close(y, y_scan[:, 0], **TOL[torch.float32])
    torch.testing.assert_close(state, h_scan, **TOL[torch.float32])
    # The reference step is the oracle's, by construction; check it against the recurrence directly too.
    again = args["initial_state"].clone()
    kernels.ssd_reference.ssd_state_update(again, step["x"], step["dt"], args["A"], step["B"], step["C"],
                                           args["D"], step["z"], args["dt_bias"], True, dt_limit)
    torch.testing.assert_close(again, h_scan, **TOL[torch.float32])


@pytest.mark.parametrize("groups", [1, 4])
def test_cpu_gated_rms_norm_matches_torch(groups):
    g = torch.Generator().manual_seed(0)
    y, z, w = (torch.randn(*shape, generator=g) for shape in ((2, 70, 48), (2, 70, 48), (48,)))
    with torch.no_grad():
        out = kernels.gated_rms_norm(y, z, w, 48 // groups, 1e-5, backend="cpu")
        ref = kernels.gated_rms_norm(y, z, w, 48 // groups, 1e-5, backend="reference")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    manual = (y * torch.nn.functional.silu(z)).view(2, 70, groups, -1)
    manual = w * (manual / manual.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()).view(2, 70, 48)
    torch.testing.assert_close(ref, manual, **TOL[torch.float32])


def test_shape_errors_and_empty_input():
    args = ssd_inputs(length=3)
    with pytest.raises(ValueError, match="ssd_scan shapes"):
        kernels.ssd_scan(**{**args, "B": args["B"][:, :, :1].expand(-1, -1, 3, -1)})
    with pytest.raises(ValueError, match="unknown scan backend"):
        kernels.ssd_scan(**args, backend="cuda")
    y, h = kernels.ssd_scan(**{**args, **{k: args[k][:, :0] for k in ("x", "dt", "B", "C", "z")}})
    assert y.shape == (2, 0, 4, 40)
    torch.testing.assert_close(h, args["initial_state"])


@pytest.mark.skipif("triton" not in FUSED, reason="Triton needs CUDA or TRITON_INTERPRET=1")
def test_triton_model_matches_reference():
    """A whole tiny Mamba-2 on the Triton kernels (SSD, decoding step) against the reference backend."""
    from mambapoc.models.mamba2 import Mamba2Config, Mamba2LM

    torch.manual_seed(0)
    cfg = Mamba2Config(vocab_size=40, hidden_size=16, num_heads=2, head_dim=16, state_size=8, n_groups=2,
                       num_hidden_layers=2, chunk_size=16)
    device = "cpu" if INTERPRETING else "cuda"
    model = Mamba2LM(cfg).eval().to(device)
    ids = torch.randint(0, 40, (2, 37), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        ref = model(ids, backend="reference")
        out = model(ids[:, :-1], backend="triton")
        step = model(ids[:, -1:], state=out.state, backend="triton")
    torch.testing.assert_close(out.logits, ref.logits[:, :-1], **TOL[torch.float32])
    torch.testing.assert_close(step.logits, ref.logits[:, -1:], **TOL[torch.float32])


@pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, the Triton tests above run natively")
@pytest.mark.skipif(INTERPRETING, reason="this is the run it starts")
def test_triton_kernels_under_the_interpreter():
    here = Path(__file__)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton and not interpreter",
           str(here)]
    run = subprocess.run(cmd, env=env, cwd=here.parent.parent, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
