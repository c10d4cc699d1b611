"""Model families told from config.json (transformers' and mamba_ssm's layouts), Falcon-Mamba on our
Mamba-1 code, and every family's checkpoint loaded, scored and compared like a user's would be."""

from __future__ import annotations

import pytest
import torch
import transformers

from mambapoc.models.footprint import family_of, footprint, layer_kinds
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
    (transformers.FalconH1Config(**SMALL, num_attention_heads=4, num_key_value_heads=2, mamba_n_heads=4,
                                 mamba_d_head=16, mamba_d_state=8, mamba_d_ssm=64), "hybrid"),
    ({"d_model": 64, "n_layer": 4, "vocab_size": 64, "ssm_cfg": {"layer": "Mamba2"}}, "mamba2"),
    ({"d_model": 64, "n_layer": 4, "vocab_size": 64, "ssm_cfg": {}}, "mamba"),
    ({"d_model": 64, "n_layer": 4, "vocab_size": 64, "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [1, 3],
      "attn_cfg": {"num_heads": 4}}, "hybrid"),
])
def test_the_family_comes_from_the_config(config, family):
    assert family_of(config if isinstance(config, dict) else config.to_dict()) == family


def test_a_hybrid_records_which_layers_are_attention():
    jamba = transformers.JambaConfig(**{**SMALL, "num_hidden_layers": 8}, num_attention_heads=4,
                                     num_key_value_heads=2, attn_layer_period=4, attn_layer_offset=2)
    assert layer_kinds(jamba.to_dict()) == ["ssm", "ssm", "attention", "ssm"] * 2
    fp = footprint(jamba.to_dict(), 2)
    assert (fp.family, fp.attention_at, fp.attention_layers, fp.ssm_layers) == ("hybrid", (2, 6), 2, 6)
    assert footprint({"d_model": 64, "n_layer": 4, "vocab_size": 64, "ssm_cfg": {"layer": "Mamba2"},
                      "attn_layer_idx": [3], "attn_cfg": {"num_heads": 4, "num_heads_kv": 2}}).attention_at == (3,)


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


# One tiny random checkpoint per family a company may bring, as transformers saves it.
_ATTN = {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64}
_SSM2 = {"mamba_n_heads": 4, "mamba_d_head": 16, "mamba_d_state": 8, "mamba_chunk_size": 32}
FAMILIES = {
    "mamba2": ("Mamba2", {"num_heads": 4, "head_dim": 16, "state_size": 8, "n_groups": 2, "chunk_size": 32},
               "mamba2"),
    "jamba": ("Jamba", {**_ATTN, "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2,
                        "expert_layer_offset": 1, "num_experts": 1, "mamba_d_state": 8, "mamba_dt_rank": 4},
              "hybrid"),
    "bamba": ("Bamba", {**_ATTN, **_SSM2, "attn_layer_indices": [1]}, "hybrid"),
    "falcon_h1": ("FalconH1", {**_ATTN, **_SSM2, "mamba_d_ssm": 64}, "hybrid"),
    "zamba2": ("Zamba2", {**_ATTN, "num_key_value_heads": 4, "mamba_headdim": 16, "mamba_d_state": 8,
                          "n_mamba_heads": 4, "chunk_size": 32, "hybrid_layer_ids": [1],
                          "layers_block_type": ["mamba", "hybrid"], "use_mem_rope": False}, "hybrid"),
    "granitemoehybrid": ("GraniteMoeHybrid", {**_ATTN, **_SSM2, "shared_intermediate_size": 64,
                                              "num_local_experts": 2, "num_experts_per_tok": 1,
                                              "layer_types": ["mamba", "attention"]}, "hybrid"),
    "nemotron_h": ("NemotronH", {**_ATTN, "num_hidden_layers": 3, "hybrid_override_pattern": "M*-",
                                 "mamba_num_heads": 4, "mamba_head_dim": 16, "ssm_state_size": 8,
                                 "chunk_size": 32, "n_groups": 1}, "hybrid"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_tokenizer):
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    root = tmp_path_factory.mktemp("families")
    out = {}
    for name, (arch, kwargs, _) in FAMILIES.items():
        torch.manual_seed(0)
        cfg = getattr(transformers, f"{arch}Config")(**{"vocab_size": len(tok), "hidden_size": 32,
                                                         "num_hidden_layers": 2, **kwargs})
        model = getattr(transformers, f"{arch}ForCausalLM")(cfg).eval()
        with torch.no_grad():  # random everything, so that no zero-initialised bias or norm hides a bug
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_loads_scores_and_accounts_its_state(checkpoints, name):
    lm = load(str(checkpoints[name]))
    family = FAMILIES[name][2]
    assert lm.info.family == family
    assert lm.info.impl == "ours" and type(lm).__name__ == ("OursMamba" if family == "mamba2" else "HFCausal")
    if family == "hybrid":  # transformers' model, its SSM mixers on our kernels
        assert lm.kernel_functions and "SSM mixers on mambapoc kernels" in lm.decode_path
    theirs = load(str(checkpoints[name]), impl="hf")
    assert theirs.info.impl == "hf" and not getattr(theirs, "kernel_functions", [])
    g = torch.Generator().manual_seed(1)
    context = torch.randint(0, len(lm.tokenizer), (40,), generator=g).tolist()
    conts = [torch.randint(0, len(lm.tokenizer), (3,), generator=g).tolist() for _ in range(2)]
    with torch.inference_mode():
        got = lm.continuation_logprobs(context, conts)
        for cont, lps in zip(conts, got, strict=True):  # the same scores from one call over the whole text
            logits, _ = lm._forward(lm.as_ids(context + cont), None, last_only=False)
            logp = torch.log_softmax(logits[0, len(context) - 1 : -1].float(), dim=-1)
            want = logp.gather(-1, torch.tensor(cont)[:, None])[:, 0].tolist()
            assert lps == pytest.approx(want, abs=1e-4)
        assert theirs.continuation_logprobs(context, conts) == [pytest.approx(lps, abs=1e-4) for lps in got]
        # What decoding carries grows by the attention layers' keys and values a token, and no more.
        short, long = (lm.cache_bytes(lm.prefill(lm.as_ids(context[:n]))[1]) for n in (20, 40))
    fp = footprint(lm.model.config.to_dict(), 4)
    assert long - short == fp.kv_bytes_per_token * 20
    assert fp.family == family and (fp.kv_bytes_per_token > 0) == (family == "hybrid")


def test_transformers_mamba1_mixers_are_fed_continuations_a_token_at_a_time(tiny_models, checkpoints):
    hf = load(str(tiny_models["mamba"]), impl="hf")
    assert not hf.continues_in_pieces() and "token by token" in hf.decode_path
    assert not load(str(checkpoints["jamba"])).continues_in_pieces()
    assert load(str(tiny_models["llama"])).continues_in_pieces()
    assert load(str(checkpoints["bamba"])).continues_in_pieces()  # Mamba-2 mixers take the state along
    ours = load(str(tiny_models["mamba"]))
    with torch.inference_mode():
        a = hf.continuation_logprobs(list(range(1, 30)), [[5, 6, 7]])
        b = ours.continuation_logprobs(list(range(1, 30)), [[5, 6, 7]])
    assert a[0] == pytest.approx(b[0], abs=1e-4)


def test_a_two_length_compare_on_every_family(checkpoints, tiny_models, tiny_dataset, tmp_path):
    from mambapoc.cli import main
    from mambapoc.results import read_cells

    data_dir, name = tiny_dataset
    out = tmp_path / "run"
    main(["compare", "--dataset", name, "--data-dir", str(data_dir), "--models",
          ",".join(str(p) for p in [*checkpoints.values(), tiny_models["llama"]]), "--lengths", "64,128", "--tasks", "continuation",
          "--out", str(out), "--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "1",
          "--new-tokens", "2", "--price-per-hour", "1.0"])
    cells = read_cells(out).cells
    assert len(cells) == 2 * (len(FAMILIES) + 1)
    assert all(c.status == "ok" for c in cells), [(c.model_name, c.error) for c in cells if not c.ok]
    assert {c.model_name: c.family for c in cells} == {**{n: f for n, (_, _, f) in FAMILIES.items()},
                                                        "llama": "transformer"}
    by = {(c.model_name, c.length_tokens): c.state_bytes for c in cells}
    assert by[("mamba2", 64)] == by[("mamba2", 128)] and by[("bamba", 128)] > by[("bamba", 64)]
    main(["report", str(out), "--format", "html", "--out", str(tmp_path / "report")])
    text = next((tmp_path / "report").glob("*.html")).read_text()
    assert "Mamba-2 (state space)" in text
    assert "hybrid (state space + attention): attention in layers 2 of 2" in text  # Bamba, Jamba
    assert "attention in layers 1, 2 of 2" in text  # Falcon-H1: attention beside the SSM in every layer
    assert "attention in layers 2 of 3" in text  # Nemotron-H's M*- pattern
    summary = (tmp_path / "report" / "summary.md")
    main(["report", str(out), "--format", "md", "--out", str(tmp_path / "report")])
    head = summary.read_text().split("## 2.")[0]
    assert "No comparison" not in head and "mamba2" in head and "llama" in head  # the first SSM model vs the Transformer
