"""transformers' Mamba-family and hybrid models with their SSM mixers on our kernels (models/hf_kernels.py):
the same logits as transformers' own code, in prefill and decoding, and the original functions back after."""

from __future__ import annotations

import functools

import pytest
import torch
import transformers

from mambapoc import kernels
from mambapoc.models.hf_kernels import kernel_functions, ssm_kernels

pytestmark = pytest.mark.timeout(120)

SMALL = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64}
ATTN = {"num_attention_heads": 4, "num_key_value_heads": 2}
# Each SSM layer: 4 heads of 16 channels, state 8, 2 groups; chunks of 16, so a 40-token prefill has 3.
CONFIGS = {
    "Mamba2": lambda **kw: transformers.Mamba2Config(
        **SMALL, num_hidden_layers=2, num_heads=4, head_dim=16, state_size=8, n_groups=2, chunk_size=16, **kw),
    "Bamba": lambda **kw: transformers.BambaConfig(
        **SMALL, **ATTN, num_hidden_layers=3, attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=16,
        mamba_d_state=8, mamba_n_groups=2, mamba_chunk_size=16, **kw),
    "Jamba": lambda **kw: transformers.JambaConfig(
        **SMALL, **ATTN, num_hidden_layers=2, attn_layer_period=2, attn_layer_offset=1, num_experts=1,
        expert_layer_period=1, expert_layer_offset=0, mamba_d_state=8, mamba_dt_rank=4, **kw),
    "FalconH1": lambda **kw: transformers.FalconH1Config(
        **SMALL, **ATTN, head_dim=8, num_hidden_layers=2, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16,
        mamba_d_state=8, mamba_n_groups=2, mamba_chunk_size=16, **kw),
    "Zamba2": lambda **kw: transformers.Zamba2Config(
        **SMALL, num_attention_heads=4, num_hidden_layers=3, hybrid_layer_ids=[1],
        layers_block_type=["linear_attention", "hybrid", "linear_attention"], mamba_d_state=8, n_mamba_heads=4,
        mamba_headdim=16, mamba_ngroups=2, chunk_size=16, adapter_rank=4, **kw),
    "GraniteMoeHybrid": lambda **kw: transformers.GraniteMoeHybridConfig(
        **SMALL, **ATTN, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"], mamba_n_heads=4,
        mamba_d_head=16, mamba_d_state=8, mamba_n_groups=2, mamba_chunk_size=16, num_local_experts=2,
        num_experts_per_tok=1, shared_intermediate_size=32, **kw),
    "NemotronH": lambda **kw: transformers.NemotronHConfig(
        **SMALL, **ATTN, head_dim=8, num_hidden_layers=4, mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=8,
        n_groups=2, chunk_size=16, layers_block_type=["linear_attention", "full_attention", "linear_attention", "mlp"],
        **kw),
}
FAMILIES = list(CONFIGS)
MAMBA1 = {"Jamba"}  # the others have Mamba-2 mixers


def build(name: str, **overrides) -> torch.nn.Module:
    try:
        config = CONFIGS[name](**overrides)
        model = getattr(transformers, f"{name}ForCausalLM")(config).eval()
    except Exception as e:  # a transformers version whose config cannot be made this small
        pytest.skip(f"{name}: no tiny config on transformers {transformers.__version__}: {e}")
    torch.manual_seed(0)
    with torch.no_grad():  # away from the initialisation (ones, zeros), so that every bias and D matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


model_for = functools.cache(build)


def tokens(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(seed))


def piece(model, ids, start: int, end: int, cache=None):
    """Tokens start:end after `cache`. The positions are explicit: Bamba's forward (transformers 5.24)
    numbers every call's tokens from 0 when not told, which puts the rotary embedding off after a cache."""
    positions = torch.arange(start, end)[None].expand(ids.shape[0], -1)
    return model(input_ids=ids[:, start:end], position_ids=positions, cache=cache, use_cache=True)


@pytest.fixture
def calls(monkeypatch):
    """How often each of our kernels ran (hf_kernels looks them up on mambapoc.kernels at every call)."""
    counts = dict.fromkeys(("causal_conv1d", "selective_scan", "selective_state_update", "ssd_scan",
                            "ssd_state_update"), 0)

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in counts:
        monkeypatch.setattr(kernels, name, counted(name, getattr(kernels, name)))
    return counts


def ssm_layers(model) -> int:
    return sum(1 for m in model.modules() if hasattr(m, "A_log"))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("name", FAMILIES)
def test_prefill_logits_equal_transformers(name, backend, calls):
    model, ids = model_for(name), tokens(40)
    with torch.no_grad():
        theirs = model(ids).logits
        with ssm_kernels(model, backend=backend):
            ours = model(ids).logits
    assert (ours - theirs).abs().max() <= 1e-4
    scan = "selective_scan" if name in MAMBA1 else "ssd_scan"
    assert calls[scan] == calls["causal_conv1d"] == ssm_layers(model) > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_decoding_with_the_cache_equals_transformers(name, calls):
    """Prefill 16 tokens, decode 8 one at a time, then one 6-token call that continues from the cache."""
    model, ids = model_for(name), tokens(30, seed=1)
    pieces = [(0, 16), *((t, t + 1) for t in range(16, 24)), (24, 30)]
    with torch.no_grad():
        runs = []
        for patched in (False, True):
            logits, cache = [], None
            with ssm_kernels(model) if patched else torch.no_grad():
                for start, end in pieces:
                    out = piece(model, ids, start, end, cache)
                    logits.append(out.logits)
                    cache = out.cache
            runs.append(logits)
    for theirs, ours in zip(*runs, strict=True):
        assert (ours - theirs).abs().max() <= 1e-4
    step = "selective_state_update" if name in MAMBA1 else "ssd_state_update"
    assert calls[step] == 8 * ssm_layers(model)


@pytest.mark.parametrize("name", ["Bamba", "Jamba"])
def test_gradients_equal_transformers(name):
    model, ids = model_for(name), tokens(24, seed=2)
    grads = []
    for patched in (False, True):
        model.zero_grad()
        with ssm_kernels(model) if patched else torch.enable_grad():
            model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    theirs, ours = grads
    assert theirs.keys() == ours.keys()
    assert max((ours[n] - theirs[n]).abs().max() for n in theirs) <= 1e-4
    model.zero_grad(set_to_none=True)


def _module_of(model, function: str):
    import sys

    return next(sys.modules[type(m).__module__] for m in model.modules()
                if function in vars(sys.modules[type(m).__module__]))


@pytest.mark.parametrize("name", ["Bamba", "Jamba"])
def test_the_originals_are_back_after_the_block_even_on_errors(name):
    model = model_for(name)
    module = _module_of(model, "causal_conv1d_fn")
    names = [f.split(".", 1)[1] for f in kernel_functions(model)]
    originals = {n: vars(module)[n] for n in names}
    with ssm_kernels(model):
        assert all(vars(module)[n] is not originals[n] for n in names)
        assert all(vars(module)[n].mambapoc_original is originals[n] for n in names)
    assert all(vars(module)[n] is originals[n] for n in names)
    with pytest.raises(RuntimeError, match="inside"), ssm_kernels(model):
        raise RuntimeError("inside")
    assert all(vars(module)[n] is originals[n] for n in names)


@pytest.mark.parametrize("name", FAMILIES)
def test_kernel_functions_name_the_swapped_functions(name):
    found = kernel_functions(model_for(name))
    prefix = found[0].split(".")[0]
    mamba1 = ["causal_conv1d_fn", "causal_conv1d_update", "mamba_selective_scan", "mamba_selective_state_update"]
    mamba2 = ["causal_conv1d_fn", "causal_conv1d_update", "mamba2_chunk_scan", "mamba2_selective_state_update"]
    assert found == [f"{prefix}.{f}" for f in (mamba1 if name in MAMBA1 else mamba2)]


def test_a_transformer_has_no_kernel_functions_and_runs_unchanged():
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL, **ATTN, num_hidden_layers=2)).eval()
    assert kernel_functions(model) == []
    ids = tokens(12)
    with torch.no_grad():
        theirs = model(ids).logits
        with ssm_kernels(model):
            assert torch.equal(model(ids).logits, theirs)


def test_another_activation_stays_on_transformers_convolution(calls):
    model = build("NemotronH", mamba_hidden_act="relu")
    ids = tokens(40)
    with torch.no_grad():
        theirs = model(ids).logits
        with ssm_kernels(model):
            ours = model(ids).logits
    assert (ours - theirs).abs().max() <= 1e-4
    assert calls["causal_conv1d"] == 0 and calls["ssd_scan"] == ssm_layers(model)


ORIGINAL = object()


@pytest.fixture
def spied(monkeypatch):
    """Bamba's and Jamba's modeling modules with each function replaced by a spy answering ORIGINAL, so
    that what the adapters hand back to the original is visible."""
    modules = {name: _module_of(model_for(name), "causal_conv1d_fn") for name in ("Bamba", "Jamba")}
    for module in modules.values():
        for f in ("causal_conv1d_fn", "causal_conv1d_update", "mamba2_chunk_scan",
                  "mamba2_selective_state_update", "mamba_selective_scan", "mamba_selective_state_update"):
            if f in vars(module):
                monkeypatch.setattr(module, f, lambda *a, **k: ORIGINAL)
    return modules


def test_arguments_beyond_our_kernels_go_to_the_original(spied, calls):
    bamba, jamba = spied["Bamba"], spied["Jamba"]
    b, h, p, n, g, L = 2, 4, 16, 8, 2, 10
    x, z = torch.randn(b, h, p), None
    dt = torch.randn(b, h)[..., None].expand(-1, -1, p)  # per head, as the models pass it
    A = -torch.rand(h)[:, None, None].expand(-1, p, n)
    D, bias = torch.randn(h)[:, None].expand(-1, p), torch.randn(h)[:, None].expand(-1, p)
    B, C = torch.randn(b, g, n), torch.randn(b, g, n)
    with ssm_kernels(model_for("Bamba")), ssm_kernels(model_for("Jamba")):
        step = bamba.mamba2_selective_state_update
        state = torch.randn(b, h, p, n)
        assert step(state, x, dt, A, B, C, D, bias, True, z) is not ORIGINAL
        assert calls["ssd_state_update"] == 1
        varying = dt + torch.randn(b, h, p)  # dt that truly differs over the head dim
        assert step(state, x, varying, A, B, C, D, bias, True, z) is ORIGINAL
        assert step(state, x, dt, A.contiguous() + torch.randn(h, p, n), B, C, D, bias, True, z) is ORIGINAL
        assert step(state, x.requires_grad_(), dt, A, B, C, D, bias, True, z) is ORIGINAL  # in place: no grad
        assert calls["ssd_state_update"] == 1

        xs, dts = torch.randn(b, L, h, p), torch.randn(b, L, h)
        Bs, Cs = torch.randn(b, L, g, n), torch.randn(b, L, g, n)
        scan = bamba.mamba2_chunk_scan
        assert scan(xs, dts, A[:, 0, 0], Bs, Cs, 4, D=D[:, 0], dt_softplus=True, z=None) is not ORIGINAL
        assert scan(xs, dts, A[:, 0, 0], Bs, Cs, 4, dt_softplus=True, seq_idx=torch.zeros(b, L)) is ORIGINAL
        assert scan(xs, dts, A[:, 0, 0], Bs, Cs, 4, dt_softplus=True, z=torch.randn_like(xs)) is ORIGINAL
        assert scan(xs, dts, A[:, 0, 0], Bs, Cs, 4, dt_softplus=False) is ORIGINAL

        conv, w = bamba.causal_conv1d_fn, torch.randn(h * p, 4)
        u = torch.randn(b, h * p, L)
        assert conv(u, w, None, activation="silu") is not ORIGINAL
        assert conv(u, w, None, activation=None) is ORIGINAL
        assert conv(u, w, None, activation="silu", cu_seqlens=torch.tensor([0, L])) is ORIGINAL
        assert bamba.causal_conv1d_update(u[..., :1], torch.randn(b, h * p, 2), w, None, "silu") is ORIGINAL

        d = h * p
        u, delta, Am = torch.randn(b, d, L), torch.randn(b, d, L), -torch.rand(d, n)
        B1, C1 = torch.randn(b, n, L), torch.randn(b, n, L)
        mscan = jamba.mamba_selective_scan
        assert mscan(u, delta, Am, B1, C1, delta_softplus=True, use_associative_scan=True) is not ORIGINAL
        grouped = torch.randn(b, 1, n, L)  # mamba_ssm's grouped B, C
        assert mscan(u, delta, Am, grouped, grouped, delta_softplus=True) is ORIGINAL
        assert calls["selective_scan"] == 1


def _zero_ssm_states(cache) -> None:
    for i in range(len(cache.layers)):
        try:
            state = cache.get_recurrent_state(i)
        except ValueError:  # an attention layer
            continue
        if state is not None:
            state.zero_()


def test_jamba_drops_the_ssm_state_in_a_multi_token_call_after_a_cache():
    """A finding about transformers, not about us: Jamba's Mamba-1 mixer calls `mamba_selective_scan`
    without the cached SSM state whenever a call has more than one token (only the convolution state is
    carried), so a prompt prefilled in two pieces gives other logits than in one piece, the same as if the
    cached SSM state were zeros. One token at a time (`mamba_selective_state_update`) does carry it, and
    Bamba's Mamba-2 mixer passes `initial_states` to its scan. Our kernels keep transformers' behaviour."""
    ids = tokens(16, seed=3)

    def runs(model):
        with torch.no_grad():
            whole = model(ids).logits[:, 8:]
            split = piece(model, ids, 8, 16, piece(model, ids, 0, 8).cache).logits
            cache = piece(model, ids, 0, 8).cache
            _zero_ssm_states(cache)
            zeroed = piece(model, ids, 8, 16, cache).logits
            cache, steps = piece(model, ids, 0, 8).cache, []
            for t in range(8, 16):
                out = piece(model, ids, t, t + 1, cache)
                cache = out.cache
                steps.append(out.logits)
        return whole, split, zeroed, torch.cat(steps, dim=1)

    for name, carried in (("Jamba", False), ("Bamba", True)):
        model = model_for(name)
        whole, split, zeroed, steps = theirs = runs(model)
        assert (steps - whole).abs().max() <= 1e-4
        if carried:
            assert (split - whole).abs().max() <= 1e-4
            assert (zeroed - whole).abs().max() > 1e-3
        else:
            assert (split - whole).abs().max() > 1e-3
            assert (split - zeroed).abs().max() <= 1e-6
        with ssm_kernels(model):
            ours = runs(model)
        assert max((a - b).abs().max() for a, b in zip(ours, theirs, strict=True)) <= 1e-4
