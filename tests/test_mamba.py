"""The bundled Mamba against transformers' MambaForCausalLM on the same weights, and its state carry."""

import pytest
import torch
import transformers

from mambapoc.models.mamba import MambaLM, MambaModel, MambaState

VOCAB = 64
CONFIGS = {
    "biases-d4-rank2": {"hidden_size": 32, "state_size": 4, "time_step_rank": 2, "use_bias": True},
    "no-biases-d16-auto": {"hidden_size": 48, "state_size": 16, "use_conv_bias": False,
                           "residual_in_fp32": False},
    "d16-rank8-untied-k3": {"hidden_size": 32, "state_size": 16, "time_step_rank": 8, "conv_kernel": 3,
                            "tie_word_embeddings": False},
}


def hf_model(seed=0, **overrides) -> transformers.MambaForCausalLM:
    """A random transformers Mamba; every weight is perturbed so zero-initialised biases are exercised."""
    torch.manual_seed(seed)
    cfg = transformers.MambaConfig(vocab_size=VOCAB, num_hidden_layers=2, **overrides)
    model = transformers.MambaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, ours loaded from its saved directory) for the first config."""
    hf = hf_model(**CONFIGS["biases-d4-rank2"])
    path = tmp_path_factory.mktemp("ckpt")
    hf.save_pretrained(path)
    return hf, MambaLM.from_pretrained(path).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prefill_and_decode_equal_transformers(name, tmp_path):
    hf = hf_model(**CONFIGS[name])
    hf.save_pretrained(tmp_path)
    ours = MambaLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, VOCAB, (2, 300), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(ids, use_cache=True)
        out = ours(ids, chunk_size=128)
        assert (out.logits - theirs.logits).abs().max() <= 1e-4
        cache, state = theirs.cache, out.state
        for step in range(20):
            token = ids[:, step : step + 1]
            theirs = hf(token, cache=cache, use_cache=True)
            out = ours(token, state=state)
            cache, state = theirs.cache, out.state
            assert (out.logits - theirs.logits).abs().max() <= 1e-4, f"decode step {step}"


def test_reference_backend_equals_transformers(pair):
    hf, ours = pair
    ids = torch.randint(0, VOCAB, (1, 100), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours(ids, backend="reference").logits - hf(ids).logits).abs().max() <= 1e-4


def test_backbone_hidden_states_and_inputs_embeds_match_transformers(pair):
    hf, ours = pair
    ids = torch.randint(0, VOCAB, (2, 50), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf.backbone(ids, output_hidden_states=True)
        out = ours.backbone(inputs_embeds=ours.backbone.embeddings(ids), output_hidden_states=True)
    assert isinstance(ours.backbone, MambaModel) and len(out.hidden_states) == 2
    for a, b in zip(out.hidden_states, theirs.hidden_states[:2], strict=True):
        assert (a - b).abs().max() <= 1e-4
    assert (out.last_hidden_state - theirs.last_hidden_state).abs().max() <= 1e-4


def test_chunked_prefill_equals_one_shot_and_decode_equals_prefill(pair):
    _, ours = pair
    ids = torch.randint(0, VOCAB, (2, 90), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = ours(ids, chunk_size=None)
        for chunk in (1, 7, 64):
            out = ours(ids, chunk_size=chunk)
            torch.testing.assert_close(out.logits, full.logits, rtol=1e-4, atol=1e-4)
            for a, b in zip(out.state.ssm, full.state.ssm, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        first = ours(ids[:, :89])
        step = ours(ids[:, 89:], state=first.state)
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], rtol=1e-4, atol=1e-4)


def test_state_size(pair):
    _, ours = pair
    with torch.no_grad():
        state = ours(torch.zeros(3, 10, dtype=torch.long)).state
    assert state.nbytes() == MambaState.analytic_nbytes(ours.config, batch=3, dtype=torch.float32)
    cfg = ours.config
    per_layer = 3 * cfg.intermediate_size * ((cfg.conv_kernel - 1) * 2 + cfg.state_size * 4)
    assert MambaState.analytic_nbytes(cfg, batch=3, dtype=torch.bfloat16) == cfg.num_hidden_layers * per_layer


def test_bf16_weights_keep_fp32_ssm_parameters_and_state(pair, tmp_path):
    hf, ours = pair
    hf.save_pretrained(tmp_path)
    half = MambaLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    mixer = half.backbone.layers[0].mixer
    assert mixer.A_log.dtype == torch.float32 and mixer.D.dtype == torch.float32
    assert mixer.in_proj.weight.dtype == torch.bfloat16
    ids = torch.randint(0, VOCAB, (1, 60), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = half(ids)
        ref = ours(ids).logits
        step = half(ids[:, :1], state=out.state)
    assert out.logits.dtype == torch.float32 and all(s.dtype == torch.float32 for s in out.state.ssm)
    assert out.state.conv[0].dtype == torch.bfloat16 and step.logits.isfinite().all()
    assert (out.logits - ref).abs().max() < 0.1 * ref.abs().max()


def test_training_gradients_through_fast_scan_equal_reference(pair):
    _, ours = pair
    ids = torch.randint(0, VOCAB, (2, 80), generator=torch.Generator().manual_seed(8))

    def grads(backend):
        ours.zero_grad()
        logits = ours(ids[:, :-1], backend=backend, chunk_size=32).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1)).backward()
        return {k: p.grad.clone() for k, p in ours.named_parameters()}

    fast, ref = grads("cpu"), grads("reference")
    ours.zero_grad()
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-3, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
