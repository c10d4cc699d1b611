"""Loading and saving the transformers MambaForCausalLM format, and the errors a user sees."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from mambapoc.errors import UserError
from mambapoc.models.mamba import MambaConfig, MambaLM
from mambapoc.models.registry import resolve

TINY = {"vocab_size": 50, "hidden_size": 16, "state_size": 4, "num_hidden_layers": 2}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A directory written by transformers itself, and the model that wrote it."""
    torch.manual_seed(0)
    hf = transformers.MambaForCausalLM(transformers.MambaConfig(**TINY)).eval()
    path = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(path)
    return path, hf


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


IDS = torch.arange(20).reshape(1, 20) % TINY["vocab_size"]


@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_loads_in_transformers(tmp_path, tied):
    torch.manual_seed(1)
    ours = MambaLM(MambaConfig(**TINY, tie_word_embeddings=tied)).eval()
    ours.save_pretrained(tmp_path)
    assert ("lm_head.weight" in load_file(tmp_path / "model.safetensors")) is not tied
    theirs = transformers.MambaForCausalLM.from_pretrained(tmp_path).eval()
    assert (logits(theirs, IDS) - logits(ours, IDS)).abs().max() <= 1e-4
    again = MambaLM.from_pretrained(tmp_path)
    assert torch.equal(logits(again, IDS), logits(ours, IDS))
    assert again.num_parameters() == ours.num_parameters() == theirs.num_parameters()


def test_config_round_trip_and_defaults(saved):
    path, hf = saved
    d = json.loads((path / "config.json").read_text())
    cfg = MambaConfig.from_dict(d)
    assert cfg.time_step_rank == 1 and cfg.intermediate_size == 32 and cfg.use_conv_bias and not cfg.use_bias
    out = cfg.to_dict()
    assert out["model_type"] == "mamba" and out["architectures"] == ["MambaForCausalLM"]
    assert MambaConfig.from_dict(out) == cfg


def test_sharded_safetensors_and_pytorch_bin(tmp_path, saved):
    path, hf = saved
    weights = load_file(path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, tmp_path / shard, metadata={"format": "pt"})
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert (logits(MambaLM.from_pretrained(tmp_path), IDS) - logits(hf, IDS)).abs().max() <= 1e-4
    for shard in shards:
        (tmp_path / shard).unlink()
    (tmp_path / "model.safetensors.index.json").unlink()
    torch.save(weights, tmp_path / "pytorch_model.bin")
    assert (logits(MambaLM.from_pretrained(tmp_path), IDS) - logits(hf, IDS)).abs().max() <= 1e-4


def test_mamba_ssm_checkpoint_layout(tmp_path, saved):
    path, hf = saved
    weights = load_file(path / "model.safetensors")
    weights = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in weights.items()}
    save_file(weights, tmp_path / "model.safetensors")
    config = {"d_model": 16, "n_layer": 2, "vocab_size": 45, "pad_vocab_size_multiple": 10,
              "ssm_cfg": {"d_state": 4}, "rms_norm": True, "residual_in_fp32": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = MambaLM.from_pretrained(tmp_path)
    assert ours.config.vocab_size == 50
    assert (logits(ours, IDS) - logits(hf, IDS)).abs().max() <= 1e-4


def test_errors_name_what_is_wrong(tmp_path, saved):
    path, _ = saved
    with pytest.raises(UserError, match="config.json"):
        MambaLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="model_type 'llama'"):
        MambaLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(UserError, match="model.safetensors"):
        MambaLM.from_pretrained(tmp_path)
    weights = load_file(path / "model.safetensors")
    del weights["backbone.layers.1.mixer.A_log"]
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match=r"backbone\.layers\.1\.mixer\.A_log") as err:
        MambaLM.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot read weights"):
        MambaLM.from_pretrained(tmp_path)


def test_unavailable_hub_id_says_how_to_provide_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="download") as err:
        resolve("nobody-here/no-such-mamba")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="not a checkpoint directory .*registry"):
        MambaLM.from_pretrained("nobody-here/no-such-mamba")
