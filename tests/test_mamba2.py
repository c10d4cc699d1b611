"""The bundled Mamba-2 against transformers' Mamba2ForCausalLM on the same weights, its state carry, and
the checkpoint format (load, save, errors)."""

import dataclasses
import json
import math

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from mambapoc.errors import UserError
from mambapoc.models.mamba2 import Mamba2Config, Mamba2LM, Mamba2Model, Mamba2State

VOCAB = 64
CONFIGS = {
    "g1-p16-n8-tied-biases": {"hidden_size": 32, "num_heads": 4, "head_dim": 16, "state_size": 8,
                              "n_groups": 1, "use_bias": True, "tie_word_embeddings": True, "chunk_size": 32},
    "g2-p8-n16-untied-k3": {"hidden_size": 32, "num_heads": 8, "head_dim": 8, "state_size": 16, "n_groups": 2,
                            "conv_kernel": 3, "use_conv_bias": False, "residual_in_fp32": False,
                            "chunk_size": 16},
    "g2-p12-n4-expand3": {"hidden_size": 16, "expand": 3, "num_heads": 4, "head_dim": 12, "state_size": 4,
                          "n_groups": 2, "chunk_size": 64},
}


def hf_model(seed=0, **overrides) -> transformers.Mamba2ForCausalLM:
    """A random transformers Mamba-2; every weight is perturbed so zero-initialised biases are exercised."""
    torch.manual_seed(seed)
    cfg = transformers.Mamba2Config(vocab_size=VOCAB, num_hidden_layers=2, **overrides)
    model = transformers.Mamba2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def ids_of(batch, length, seed):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, ours loaded from its saved directory) for the second config (two groups)."""
    hf = hf_model(**CONFIGS["g2-p8-n16-untied-k3"])
    path = tmp_path_factory.mktemp("ckpt")
    hf.save_pretrained(path)
    return hf, Mamba2LM.from_pretrained(path).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prefill_and_decode_equal_transformers(name, tmp_path):
    hf = hf_model(**CONFIGS[name])
    hf.save_pretrained(tmp_path)
    ours = Mamba2LM.from_pretrained(tmp_path).eval()
    ids = ids_of(2, 150, 1)
    with torch.no_grad():
        theirs = hf(ids, use_cache=True)
        out = ours(ids, chunk_size=64)
        assert max_diff(out.logits, theirs.logits) <= 1e-4
        cache, state = theirs.cache, out.state
        for step in range(20):
            token = ids[:, step : step + 1]
            theirs = hf(token, cache=cache, use_cache=True)
            out = ours(token, state=state)
            cache, state = theirs.cache, out.state
            assert max_diff(out.logits, theirs.logits) <= 1e-4, f"decode step {step}"


def test_reference_backend_equals_transformers(pair):
    hf, ours = pair
    ids = ids_of(1, 100, 2)
    with torch.no_grad():
        assert max_diff(ours(ids, backend="reference").logits, hf(ids).logits) <= 1e-4


def test_time_step_limit_equals_transformers(tmp_path):
    """transformers clamps dt in its chunked (prefill) path only; ours clamps in the decoding step too, so
    a prefill in one-token steps equals the one-shot prefill."""
    hf = hf_model(**CONFIGS["g2-p12-n4-expand3"], time_step_limit=(0.05, 0.3))
    hf.save_pretrained(tmp_path)
    ours = Mamba2LM.from_pretrained(tmp_path).eval()
    assert ours.config.time_step_limit == (0.05, 0.3)
    ids = ids_of(2, 60, 3)
    with torch.no_grad():
        full = ours(ids)
        assert max_diff(full.logits, hf(ids).logits) <= 1e-4
        assert max_diff(full.logits, hf_model(**CONFIGS["g2-p12-n4-expand3"])(ids).logits) > 1e-3  # it bites
        state, steps = None, []
        for t in range(ids.shape[1]):
            out = ours(ids[:, t : t + 1], state=state)
            state = out.state
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full.logits, rtol=1e-4, atol=1e-4)


def test_backbone_hidden_states_and_inputs_embeds_match_transformers(pair):
    hf, ours = pair
    ids = ids_of(2, 50, 3)
    with torch.no_grad():
        theirs = hf.backbone(ids, output_hidden_states=True)
        out = ours.backbone(inputs_embeds=ours.backbone.embeddings(ids), output_hidden_states=True)
    assert isinstance(ours.backbone, Mamba2Model) and len(out.hidden_states) == 2
    for a, b in zip(out.hidden_states, theirs.hidden_states[:2], strict=True):
        assert max_diff(a, b) <= 1e-4
    assert max_diff(out.last_hidden_state, theirs.last_hidden_state) <= 1e-4


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_chunked_prefill_equals_one_shot_and_decode_equals_prefill(pair, backend):
    _, ours = pair
    ids = ids_of(2, 90, 4)
    with torch.no_grad():
        full = ours(ids, chunk_size=None, backend=backend)
        for chunk in (1, 7, 64):
            out = ours(ids, chunk_size=chunk, backend=backend)
            torch.testing.assert_close(out.logits, full.logits, rtol=1e-4, atol=1e-4)
            for a, b in zip(out.state.ssm + out.state.conv, full.state.ssm + full.state.conv, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        first = ours(ids[:, :89], backend=backend)
        step = ours(ids[:, 89:], state=first.state, backend=backend)
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], rtol=1e-4, atol=1e-4)


def test_state_layout_and_size(pair):
    _, ours = pair
    cfg = ours.config
    with torch.no_grad():
        state = ours(torch.zeros(3, 10, dtype=torch.long)).state
    conv_dim = cfg.intermediate_size + 2 * cfg.n_groups * cfg.state_size
    assert state.conv[0].shape == (3, cfg.conv_kernel - 1, conv_dim)
    assert state.ssm[0].shape == (3, cfg.num_heads, cfg.head_dim, cfg.state_size)
    assert state.nbytes() == Mamba2State.analytic_nbytes(cfg, batch=3, dtype=torch.float32)
    per_layer = 3 * ((cfg.conv_kernel - 1) * conv_dim * 2 + cfg.num_heads * cfg.head_dim * cfg.state_size * 4)
    bf16 = Mamba2State.analytic_nbytes(cfg, batch=3, dtype=torch.bfloat16)
    assert bf16 == cfg.num_hidden_layers * per_layer


def test_bf16_weights_keep_fp32_ssm_parameters_and_state(pair, tmp_path):
    hf, ours = pair
    hf.save_pretrained(tmp_path)
    half = Mamba2LM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    mixer = half.backbone.layers[0].mixer
    assert {p.dtype for p in (mixer.A_log, mixer.D, mixer.dt_bias)} == {torch.float32}
    assert mixer.in_proj.weight.dtype == torch.bfloat16
    ids = ids_of(1, 60, 7)
    with torch.no_grad():
        out = half(ids)
        ref = ours(ids).logits
        step = half(ids[:, :1], state=out.state)
    assert out.logits.dtype == torch.float32 and all(s.dtype == torch.float32 for s in out.state.ssm)
    assert out.state.conv[0].dtype == torch.bfloat16 and step.logits.isfinite().all()
    assert max_diff(out.logits, ref) < 0.1 * ref.abs().max()


def test_training_gradients_through_fast_scan_equal_reference(pair):
    _, ours = pair
    ids = ids_of(2, 80, 8)

    def grads(backend):
        ours.zero_grad()
        logits = ours(ids[:, :-1], backend=backend, chunk_size=32).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1)).backward()
        return {k: p.grad.clone() for k, p in ours.named_parameters()}

    fast, ref = grads("cpu"), grads("reference")
    ours.zero_grad()
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-3, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


TINY = {"vocab_size": 50, "hidden_size": 16, "num_heads": 4, "head_dim": 8, "state_size": 8, "n_groups": 2,
        "num_hidden_layers": 2}
IDS = torch.arange(20).reshape(1, 20) % TINY["vocab_size"]


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_loads_in_transformers(tmp_path, tied):
    torch.manual_seed(1)
    ours = Mamba2LM(Mamba2Config(**TINY, tie_word_embeddings=tied)).eval()
    ours.save_pretrained(tmp_path)
    assert ("lm_head.weight" in load_file(tmp_path / "model.safetensors")) is not tied
    theirs = transformers.Mamba2ForCausalLM.from_pretrained(tmp_path).eval()
    assert tuple(theirs.config.time_step_limit) == (0.0, math.inf) and theirs.config.n_groups == 2
    assert max_diff(logits(theirs), logits(ours)) <= 1e-4
    again = Mamba2LM.from_pretrained(tmp_path)
    assert torch.equal(logits(again), logits(ours))
    assert again.num_parameters() == ours.num_parameters() == theirs.num_parameters()


def test_config_defaults_and_round_trip(tmp_path):
    ours, theirs = Mamba2Config(), transformers.Mamba2Config()
    for f in dataclasses.fields(Mamba2Config):
        if f.name != "extra":
            assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    transformers.Mamba2Config(**TINY).save_pretrained(tmp_path)
    cfg = Mamba2Config.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert cfg.time_step_limit == (0.0, math.inf) and cfg.time_step_rank == 1
    assert cfg.conv_dim == 32 + 2 * 2 * 8
    out = cfg.to_dict()
    assert out["model_type"] == "mamba2" and out["architectures"] == ["Mamba2ForCausalLM"]
    assert Mamba2Config.from_dict(json.loads(json.dumps(out))) == cfg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hf")
    transformers.Mamba2ForCausalLM(transformers.Mamba2Config(**TINY)).save_pretrained(path)
    return path


MAMBA_SSM_CONFIG = {"d_model": 16, "n_layer": 2, "vocab_size": 45, "pad_vocab_size_multiple": 10,
                    "tie_embeddings": False,
                    "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 8, "ngroups": 2}}


def test_mamba_ssm_checkpoint_layout(tmp_path, saved):
    weights = load_file(saved / "model.safetensors")
    weights = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in weights.items()}
    save_file(weights, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(MAMBA_SSM_CONFIG))
    ours = Mamba2LM.from_pretrained(tmp_path)
    assert ours.config.vocab_size == 50 and ours.config.num_heads == 4
    hf = transformers.Mamba2ForCausalLM.from_pretrained(saved).eval()
    assert max_diff(logits(ours), logits(hf)) <= 1e-4
    for ssm, match in (({"layer": "Mamba1"}, "not a plain Mamba-2"), ({"D_has_hdim": True}, "D_has_hdim"),
                       ({"norm_before_gate": True}, "norm_before_gate")):
        config = {**MAMBA_SSM_CONFIG, "ssm_cfg": {**MAMBA_SSM_CONFIG["ssm_cfg"], **ssm}}
        (tmp_path / "config.json").write_text(json.dumps(config))
        one_line_error(tmp_path, match)


def one_line_error(path, match):
    with pytest.raises(UserError, match=match) as err:
        Mamba2LM.from_pretrained(path)
    assert "\n" not in str(err.value)


def test_errors_name_what_is_wrong(tmp_path, saved):
    one_line_error(tmp_path, "config.json")
    good = json.loads((saved / "config.json").read_text())
    for change, match in (({"model_type": "mamba"}, "model_type 'mamba'"),
                          ({"num_heads": 5}, r"hidden_size \* expand \(32\) must equal num_heads"),
                          ({"n_groups": 3}, r"n_groups \(3\) must divide num_heads"),
                          ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
                          ({"time_step_limit": [0.1]}, "time_step_limit"),
                          ({"time_step_limit": [0.5, 0.1]}, "time_step_limit")):
        (tmp_path / "config.json").write_text(json.dumps({**good, **change}))
        one_line_error(tmp_path, match)
    (tmp_path / "config.json").write_text(json.dumps(good))
    one_line_error(tmp_path, "model.safetensors")
    weights = load_file(saved / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k != "backbone.layers.1.mixer.dt_bias"},
              tmp_path / "model.safetensors")
    one_line_error(tmp_path, r"backbone\.layers\.1\.mixer\.dt_bias")
    save_file({**weights, "backbone.layers.0.mixer.D": torch.ones(3)}, tmp_path / "model.safetensors")
    one_line_error(tmp_path, r"backbone\.layers\.0\.mixer\.D has shape \(3,\)")
