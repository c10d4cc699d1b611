"""Model families told from config.json, and Falcon-Mamba on our Mamba-1 code."""

from __future__ import annotations

import pytest
import torch
import transformers

from mambapoc.models.footprint import family_of
from mambapoc.models.mamba import MambaLM
from mambapoc.models.registry import load

SMALL = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2}


@pytest.mark.parametrize("config,family", [
    (transformers.LlamaConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2), "transformer"),
    (transformers.MambaConfig(**SMALL, state_size=8), "mamba"),
    (transformers.FalconMambaConfig(**SMALL, state_size=8), "mamba"),
    (transformers.Mamba2Config(**SMALL, num_heads=4, head_dim=16, state_size=8, n_groups=1), "mamba2"),
    (transformers.JambaConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2, attn_layer_period=2,
                              attn_layer_offset=1), "hybrid"),
    (transformers.BambaConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2, attn_layer_indices=[1],
                              mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8), "hybrid"),
])
def test_the_family_comes_from_the_config(config, family):
    assert family_of(config.to_dict()) == family


@pytest.fixture(scope="module")
def falcon(tmp_path_factory, tiny_tokenizer):
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    cfg = transformers.FalconMambaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, state_size=8,
                                         mixer_rms_eps=1e-6)
    model = transformers.FalconMambaForCausalLM(cfg).eval()
    with torch.no_grad():  # random norms and A, so that the extra norms on dt, B and C matter
        for layer in model.backbone.layers:
            layer.mixer.A_log.uniform_(-1, 1)
            layer.mixer.dt_proj.bias.uniform_(-3, 0)
    path = tmp_path_factory.mktemp("falcon")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model


def test_falcon_mamba_runs_on_our_code_with_transformers_logits(falcon):
    path, theirs = falcon
    ours = MambaLM.from_pretrained(path).eval()
    assert ours.config.mixer_rms_eps == 1e-6
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids).logits - theirs(ids).logits).abs().max() <= 1e-4
        out = ours(ids[:, :8])
        ref = theirs(input_ids=ids[:, :8], use_cache=True)
        state, cache = out.state, ref.cache
        for t in range(8, 24):  # decode 16 tokens from each model's own state
            out = ours(ids[:, t:t + 1], state=state)
            ref = theirs(input_ids=ids[:, t:t + 1], cache=cache, use_cache=True)
            state, cache = out.state, ref.cache
            assert (out.logits - ref.logits).abs().max() <= 1e-4


def test_falcon_mamba_saves_as_falcon_mamba(falcon, tmp_path):
    path, theirs = falcon
    MambaLM.from_pretrained(path).save_pretrained(tmp_path)
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(again).__name__ == "FalconMambaForCausalLM"
    ids = torch.arange(10)[None] % 64
    with torch.no_grad():
        assert (again(ids).logits - theirs(ids).logits).abs().max() <= 1e-5


def test_the_registry_runs_falcon_mamba_on_ours(falcon):
    lm = load(str(falcon[0]))
    assert (lm.info.family, lm.info.impl, type(lm).__name__) == ("mamba", "ours", "OursMamba")
