"""Serving memory computed from config.json alone, against bytes worked out by hand."""

from __future__ import annotations

import pytest

from mambapoc.models.footprint import CARDS, footprint

GiB = 2**30
LLAMA = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
         "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256,
         "tie_word_embeddings": False}
MAMBA1 = {"model_type": "mamba", "num_hidden_layers": 64, "hidden_size": 2560, "expand": 2, "state_size": 16,
          "conv_kernel": 4, "vocab_size": 50280, "intermediate_size": 5120}
MAMBA2 = {"model_type": "mamba2", "num_hidden_layers": 64, "hidden_size": 2560, "expand": 2, "num_heads": 80,
          "head_dim": 64, "n_groups": 1, "state_size": 128, "conv_kernel": 4, "vocab_size": 50280}
JAMBA = {"model_type": "jamba", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
         "num_key_value_heads": 8, "attn_layer_period": 8, "attn_layer_offset": 4, "mamba_d_state": 16,
         "mamba_d_conv": 4, "mamba_expand": 2, "intermediate_size": 14336, "vocab_size": 65536}


def test_a_llama_style_kv_cache_is_gqa_aware():
    fp = footprint(LLAMA, dtype_bytes=2)
    # 32 layers x (K and V) x 8 kv heads x 128 dims x 2 bytes, per token
    assert fp.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2 == 131072
    assert fp.per_request(65536) == 8 * GiB and fp.state_bytes == 0 and fp.family == "transformer"
    assert 7.0e9 < fp.weights_bytes / 2 < 8.5e9  # an 8B-class model
    assert fp.fits(CARDS["80GB"], 65536) == (80 * GiB - fp.weights_bytes) // (8 * GiB)


def test_a_mamba1_state_is_fixed():
    fp = footprint(MAMBA1, dtype_bytes=2)
    per_layer = 3 * 5120 * 2 + 5120 * 16 * 4  # conv window (k - 1 = 3) in bf16, scan state in fp32
    assert fp.state_bytes == 64 * per_layer == 22_937_600
    assert fp.per_request(1024) == fp.per_request(65536) and fp.family == "mamba"


def test_a_mamba2_state_counts_heads_groups_and_the_conv_over_x_b_c():
    fp = footprint(MAMBA2, dtype_bytes=2)
    conv_dim = 5120 + 2 * 1 * 128
    per_layer = 3 * conv_dim * 2 + 80 * 64 * 128 * 4
    assert fp.state_bytes == 64 * per_layer == 169_836_544 and fp.family == "mamba2"


def test_a_hybrid_has_both_by_layer():
    fp = footprint(JAMBA, dtype_bytes=2)
    assert (fp.attention_layers, fp.ssm_layers, fp.family) == (4, 28, "hybrid")
    assert fp.kv_bytes_per_token == 4 * 2 * 8 * 128 * 2
    assert fp.state_bytes == 28 * (3 * 8192 * 2 + 8192 * 16 * 4)
    listed = footprint({"model_type": "bamba", "num_hidden_layers": 64, "hidden_size": 2560,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "mamba_n_heads": 80, "mamba_d_head": 64,
                        "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_conv": 4, "mamba_expand": 2,
                        "layer_types": ["linear_attention"] * 60 + ["attention"] * 4}, dtype_bytes=2)
    assert (listed.attention_layers, listed.ssm_layers) == (4, 60)
    assert listed.kv_bytes_per_token == 4 * 2 * 8 * (2560 // 32) * 2  # attention head dim: hidden / heads
    assert listed.state_bytes == 60 * (3 * (5120 + 2 * 128) * 2 + 80 * 64 * 128 * 4)


def test_sliding_window_layers_keep_their_window():
    fp = footprint({**LLAMA, "sliding_window": 4096, "layer_types": ["sliding_attention", "full_attention"] * 16})
    assert fp.per_request(65536) == 16 * 2 * 8 * 128 * 2 * (65536 + 4096)


@pytest.mark.parametrize("cfg", [LLAMA, MAMBA1, MAMBA2, JAMBA])
def test_measured_weights_replace_the_estimate(cfg):
    fp = footprint(cfg, weights_bytes=123)
    assert fp.weights_bytes == 123 and not fp.estimated_weights
