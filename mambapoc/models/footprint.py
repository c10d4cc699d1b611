"""What serving a model takes in memory, from its config.json alone: the weights, and per request at a
length the KV cache of its attention layers and the state of its SSM layers. It is computed, not
measured; it lets a team size deployments (how many requests fit on an 80 GB card at 64k) for models it
has not downloaded, and the report labels it so.

Layer types come from the config: `layer_types` / `layers_block_type` lists (transformers 5 writes
"attention", "full_attention", "sliding_attention", "linear_attention" for an SSM layer, "hybrid" for an
SSM layer with a shared attention block), `attn_layer_indices`, or `attn_layer_period`/`attn_layer_offset`
(Jamba); a model without them is all attention or all SSM by its model_type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GiB = 2**30
CARDS = {"24GB": 24 * GiB, "80GB": 80 * GiB, "141GB": 141 * GiB}
MAMBA1_TYPES = ("mamba", "falcon_mamba", "jamba")
MAMBA2_TYPES = ("mamba2", "bamba", "zamba2", "falcon_h1", "granitemoehybrid", "nemotron_h")
_SSM_NAMES = ("mamba", "mamba2", "linear_attention", "ssm")
_ATTENTION_NAMES = ("attention", "full_attention", "sliding_attention", "global_attention")


def _first(cfg: dict, *names, default=None):
    return next((cfg[n] for n in names if cfg.get(n) is not None), default)


@dataclass(frozen=True)
class Footprint:
    """Bytes of a model's weights, and the terms of its per-request memory: KV bytes per token of context
    (attention layers; `window_bytes_per_token` for sliding-window layers, which keep `window` tokens),
    and a fixed state (SSM layers)."""

    family: str  # "transformer", "mamba", "mamba2" or "hybrid"
    weights_bytes: int
    kv_bytes_per_token: int = 0
    window_bytes_per_token: int = 0
    window: int = 0
    state_bytes: int = 0
    attention_layers: int = 0
    ssm_layers: int = 0
    estimated_weights: bool = True  # counted from the config's shapes, not read from weight files
    attention_at: tuple[int, ...] = ()  # indices of the layers with attention (all of them for a Transformer)
    layers: int = 0

    def per_request(self, length: int) -> int:
        return (self.kv_bytes_per_token * length + self.window_bytes_per_token * min(length, self.window)
                + self.state_bytes)

    def fits(self, card_bytes: int, length: int) -> int:
        """Requests of `length` tokens that fit beside the weights (0 when the weights alone do not)."""
        free = card_bytes - self.weights_bytes
        return max(0, math.floor(free / self.per_request(length))) if free > 0 else 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _normalised(cfg: dict) -> tuple[dict, str]:
    """(config, model type) with mamba_ssm's own layout (no model_type; `d_model`, `n_layer`, `ssm_cfg`,
    `attn_layer_idx`) read as transformers' keys, so both kinds of checkpoint are told apart the same way."""
    model_type = str(cfg.get("model_type") or "")
    if model_type or not isinstance(cfg.get("ssm_cfg"), dict):
        return cfg, model_type
    ssm = cfg["ssm_cfg"]
    model_type = "mamba2" if ssm.get("layer") == "Mamba2" else "mamba"
    out = {**cfg, "hidden_size": cfg.get("d_model"), "num_hidden_layers": cfg.get("n_layer"),
           "state_size": ssm.get("d_state", 128 if model_type == "mamba2" else 16),
           "conv_kernel": ssm.get("d_conv", 4), "expand": ssm.get("expand", 2),
           "attn_layer_indices": cfg.get("attn_layer_idx") or None}
    if model_type == "mamba2":
        out.update(head_dim=ssm.get("headdim", 64), n_groups=ssm.get("ngroups", 1))
    attn = cfg.get("attn_cfg") or {}
    if out["attn_layer_indices"] and attn:
        heads = attn.get("num_heads") or 1
        out.update(num_attention_heads=heads, num_key_value_heads=attn.get("num_heads_kv") or heads,
                   attention_head_dim=attn.get("head_dim") or cfg["d_model"] // heads)
    return out, model_type


def layer_kinds(cfg: dict) -> list[str]:
    """'attention', 'sliding', 'ssm' or 'hybrid' (both in one layer) for each layer of a config.json."""
    cfg, model_type = _normalised(cfg)
    return _layer_kinds(cfg, model_type)


def _layer_kinds(cfg: dict, model_type: str) -> list[str]:
    """'attention', 'sliding', 'ssm' or 'hybrid' per layer."""
    n = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", default=0))
    listed = cfg.get("layer_types") or cfg.get("layers_block_type")
    if listed:
        out = []
        for kind in listed:
            kind = str(kind)
            out.append("sliding" if kind == "sliding_attention" else "hybrid" if kind == "hybrid"
                       else "ssm" if kind in _SSM_NAMES else "attention" if kind in _ATTENTION_NAMES else "ssm")
        return out
    if cfg.get("attn_layer_indices") is not None:
        indices = set(cfg["attn_layer_indices"])
        return ["attention" if i in indices else "ssm" for i in range(n)]
    if cfg.get("attn_layer_period"):
        period, offset = int(cfg["attn_layer_period"]), int(cfg.get("attn_layer_offset", 0))
        return ["attention" if i % period == offset else "ssm" for i in range(n)]
    if model_type not in MAMBA1_TYPES + MAMBA2_TYPES:
        return ["attention"] * n
    # An SSM model type with attention heads and no layer listing runs both in every layer (Falcon-H1).
    return ["hybrid" if cfg.get("num_attention_heads") else "ssm"] * n


def family_of(cfg: dict) -> str:
    """"transformer", "mamba" (Mamba-1, Falcon-Mamba), "mamba2", or "hybrid" (SSM and attention layers),
    from a config.json dict."""
    cfg, model_type = _normalised(cfg)
    kinds = _layer_kinds(cfg, model_type)
    ssm, attention = any(k in ("ssm", "hybrid") for k in kinds), any(k != "ssm" for k in kinds)
    if ssm and attention:
        return "hybrid"
    if ssm:
        return "mamba" if model_type in MAMBA1_TYPES else "mamba2"
    return "transformer"


def _attention_shape(cfg: dict) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim), GQA/MQA-aware."""
    hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv = int(_first(cfg, "num_key_value_heads", "num_kv_heads", default=1 if cfg.get("multi_query") else heads))
    head_dim = int(_first(cfg, "attention_head_dim", "head_dim", default=hidden // heads))
    return heads, kv, head_dim


def _ssm_shape(cfg: dict, model_type: str) -> dict:
    """The SSM's state shapes: Mamba-1 (d_inner x N) or Mamba-2 (heads x head dim x N, grouped B/C)."""
    hidden = int(_first(cfg, "hidden_size", "d_model"))
    expand = float(_first(cfg, "mamba_expand", "expand", default=2))
    state = int(_first(cfg, "mamba_d_state", "state_size", "d_state", default=16))
    conv = int(_first(cfg, "mamba_d_conv", "conv_kernel", "d_conv", default=4))
    if model_type in MAMBA1_TYPES:
        # Jamba's intermediate_size is its MLP's; a Mamba config's is the mixer's.
        inner = int(expand * hidden) if model_type == "jamba" else int(_first(cfg, "intermediate_size",
                                                                                default=int(expand * hidden)))
        return {"kind": "mamba", "inner": inner, "state": state, "conv": conv, "conv_dim": inner,
                "dt_rank": int(_first(cfg, "time_step_rank", "mamba_dt_rank", default=math.ceil(hidden / 16)))}
    heads = int(_first(cfg, "mamba_n_heads", "num_heads", default=int(expand * hidden) // 64))
    head_dim = int(_first(cfg, "mamba_d_head", "head_dim", default=int(expand * hidden) // heads))
    groups = int(_first(cfg, "mamba_n_groups", "n_groups", default=1))
    inner = heads * head_dim
    return {"kind": "mamba2", "inner": inner, "state": state, "conv": conv, "heads": heads, "head_dim": head_dim,
            "groups": groups, "conv_dim": inner + 2 * groups * state}


def ssm_state_bytes(shape: dict, elt: int, state_elt: int = 4) -> int:
    """One SSM layer's state per request: the conv window in the model dtype, the scan state in fp32."""
    conv = (shape["conv"] - 1) * shape["conv_dim"] * elt
    if shape["kind"] == "mamba":
        return conv + shape["inner"] * shape["state"] * state_elt
    return conv + shape["heads"] * shape["head_dim"] * shape["state"] * state_elt


def _weights(cfg: dict, kinds: list[str], ssm: dict | None, elt: int) -> int:
    """Parameter bytes from the shapes: embeddings, attention, MLP (gated, MoE where the config says),
    SSM mixers and norms. An estimate: biases and small extras are left out."""
    hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
    vocab = int(_first(cfg, "vocab_size", default=32000))
    params = vocab * hidden * (1 if cfg.get("tie_word_embeddings", True) else 2)
    if any(k != "ssm" for k in kinds):
        heads, kv, hd = _attention_shape(cfg)
        attention = hidden * heads * hd * 2 + hidden * kv * hd * 2
        ff = int(_first(cfg, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden))
        experts = int(_first(cfg, "num_experts", "num_local_experts", default=1))
        mlp = 3 * hidden * ff * experts
    for kind in kinds:
        if kind in ("attention", "sliding", "hybrid"):
            params += attention + mlp + 2 * hidden
        if kind in ("ssm", "hybrid") and ssm is not None:
            params += _ssm_params(ssm, hidden) + hidden
    return params * elt


def _ssm_params(s: dict, hidden: int) -> int:
    if s["kind"] == "mamba":
        inner, n, r = s["inner"], s["state"], s["dt_rank"]
        return hidden * 2 * inner + inner * s["conv"] + inner * (r + 2 * n) + r * inner + inner * n + 2 * inner \
            + inner * hidden
    inner, heads = s["inner"], s["heads"]
    return hidden * (2 * inner + 2 * s["groups"] * s["state"] + heads) + s["conv_dim"] * s["conv"] + 3 * heads \
        + inner + inner * hidden


def footprint(cfg: dict, dtype_bytes: int = 2, weights_bytes: int | None = None) -> Footprint:
    """The footprint of the model `cfg` (a config.json dict) in a dtype of `dtype_bytes` per value;
    `weights_bytes` when known from the weight files, else estimated from the shapes."""
    cfg, model_type = _normalised(cfg)
    kinds = _layer_kinds(cfg, model_type)
    ssm = _ssm_shape(cfg, model_type) if any(k in ("ssm", "hybrid") for k in kinds) else None
    kv_token = window_token = 0
    if any(k != "ssm" for k in kinds):
        _, kv, hd = _attention_shape(cfg)
        per_layer = 2 * kv * hd * dtype_bytes
        kv_token = per_layer * sum(k in ("attention", "hybrid") for k in kinds)
        window_token = per_layer * kinds.count("sliding")
    state = ssm_state_bytes(ssm, dtype_bytes) * sum(k in ("ssm", "hybrid") for k in kinds) if ssm else 0
    attention = sum(k != "ssm" for k in kinds)
    ssm_layers = sum(k in ("ssm", "hybrid") for k in kinds)
    family = ("transformer" if not ssm_layers else ssm["kind"] if not attention else "hybrid")
    estimated = weights_bytes is None
    return Footprint(family, weights_bytes if weights_bytes is not None else _weights(cfg, kinds, ssm, dtype_bytes),
                     kv_token, window_token, int(cfg.get("sliding_window") or 0) if window_token else 0, state,
                     attention, ssm_layers, estimated, tuple(i for i, k in enumerate(kinds) if k != "ssm"),
                     len(kinds))
