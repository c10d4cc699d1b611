"""Fresh models from a recipe's `models:` entries (Mamba, Mamba-2, Llama), all in HF checkpoint formats.

The Transformer is transformers' Llama (sdpa attention, RoPE): rotary positions are what deployed
Transformers use, so its behaviour past the training length (usually a sharp drop without RoPE
scaling) is the behaviour a user would meet. Mamba has no positions at all.
"""

from __future__ import annotations

import torch

from mambapoc.errors import UserError


def build_model(spec: dict, vocab_size: int, eos_id: int, seed: int) -> torch.nn.Module:
    settings = {k: v for k, v in spec.items() if k != "family"}
    common = {"vocab_size": vocab_size, "bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id,
              "tie_word_embeddings": True}
    torch.manual_seed(seed)
    try:
        if spec["family"] == "mamba":
            from mambapoc.models.mamba import MambaConfig, MambaLM

            return MambaLM(MambaConfig(**common, **settings))
        if spec["family"] == "mamba2":
            from mambapoc.models.mamba2 import Mamba2Config, Mamba2LM

            return Mamba2LM(Mamba2Config(**common, **settings))
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(**common, **settings, attn_implementation="sdpa"))
    except TypeError as e:
        raise UserError(f"model settings {settings}: {e}") from None


def count_params(model: torch.nn.Module) -> int:
    # Tied embeddings are one tensor; parameters() already yields each tensor once.
    return sum(p.numel() for p in model.parameters())

