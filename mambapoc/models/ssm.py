"""The skeleton the Mamba-1 (mamba.py) and Mamba-2 (mamba2.py) language models share, with transformers'
module names: embeddings → blocks (pre-norm + mixer + residual) → final RMSNorm → LM head. A model file
supplies its config, mixer, state and its mixer's own initialisation; everything here is the same for both.

Dimension names: batch (sequences), L (tokens in this call), d_model (hidden_size), vocab (vocab_size).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from mambapoc.errors import UserError


@dataclass
class LayerStates:
    """Per-layer convolution and SSM states; the model file's subclass knows their shapes."""

    conv: list[torch.Tensor]  # per layer, model dtype
    ssm: list[torch.Tensor]  # per layer, fp32

    def clone(self) -> LayerStates:
        return type(self)([c.clone() for c in self.conv], [s.clone() for s in self.ssm])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.conv, *self.ssm))


@dataclass
class ModelOutput:
    last_hidden_state: torch.Tensor  # (batch, L, d_model), after norm_f
    state: LayerStates
    hidden_states: list[torch.Tensor] | None = None  # residual stream after each layer


@dataclass
class LMOutput:
    logits: torch.Tensor  # (batch, L or logits_to_keep, vocab), fp32
    state: LayerStates


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Block(nn.Module):
    def __init__(self, config, mixer: nn.Module):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = mixer

    def forward(self, hidden, conv_state, ssm_state, backend):
        """hidden (batch, L, d_model) -> (batch, L, d_model), the new conv and SSM states."""
        # Same casts as transformers: normalise in the weights' dtype, keep the residual in fp32 if asked.
        residual = hidden.float() if self.residual_in_fp32 else hidden
        out, conv_state, ssm_state = self.mixer(self.norm(hidden.to(self.norm.weight.dtype)), conv_state,
                                                ssm_state, backend)
        return residual + out, conv_state, ssm_state


class Backbone(nn.Module):
    """Embeddings → blocks → final RMSNorm; a subclass names its mixer and state classes."""

    mixer_cls: ClassVar[type[nn.Module]]
    state_cls: ClassVar[type[LayerStates]]

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, self.mixer_cls(config)) for _ in range(config.num_hidden_layers))
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                state: LayerStates | None = None, backend: str | None = None,
                output_hidden_states: bool = False) -> ModelOutput:
        """input_ids (batch, L) or inputs_embeds (batch, L, d_model) -> last_hidden_state (batch, L,
        d_model) and the state after them."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if state is None:
            state = self.state_cls.zeros(self.config, hidden.shape[0], hidden.device, hidden.dtype)
        conv, ssm, per_layer = [], [], []
        for layer, c, s in zip(self.layers, state.conv, state.ssm, strict=True):
            hidden, c, s = layer(hidden, c, s, backend)
            conv.append(c)
            ssm.append(s)
            if output_hidden_states:
                per_layer.append(hidden)
        hidden_states = per_layer if output_hidden_states else None
        return ModelOutput(self.norm_f(hidden), self.state_cls(conv, ssm), hidden_states)


class SSMLM(nn.Module):
    """Backbone + LM head, loading and saving transformers' *ForCausalLM checkpoint layout."""

    config_cls: ClassVar[type]
    backbone_cls: ClassVar[type[Backbone]]
    fp32_params: ClassVar[tuple[str, ...]]  # parameters that stay fp32 whatever the model dtype

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.backbone = self.backbone_cls(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        if self.lm_head.weight.device.type != "meta":
            with torch.no_grad():
                self._init_weights()

    def _init_weights(self) -> None:
        """The reference initialisation both generations share: embeddings and head N(0, 0.02); per mixer
        its own parameters (`_init_mixer`), then its dt bias = softplus^-1 of a log-uniform time step in
        [time_step_min, time_step_max], zero conv bias, and out_proj scaled by 1/sqrt(layers) if asked."""
        cfg = self.config
        nn.init.normal_(self.backbone.embeddings.weight, std=0.02)
        if not cfg.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        lo, hi = math.log(cfg.time_step_min), math.log(cfg.time_step_max)
        for block in self.backbone.layers:
            m = block.mixer
            dt_bias = self._init_mixer(m)
            dt = torch.exp(torch.rand(dt_bias.shape[0]) * (hi - lo) + lo).clamp(min=cfg.time_step_floor)
            dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            if m.conv1d.bias is not None:
                m.conv1d.bias.zero_()
            if cfg.rescale_prenorm_residual:
                m.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)

    def _init_mixer(self, mixer: nn.Module) -> torch.Tensor:
        """Initialise what is the model file's own in a mixer; return its dt bias for `_init_weights`."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, state: LayerStates | None = None, backend: str | None = None,
                logits_to_keep: int = 0, chunk_size: int | None = 2048) -> LMOutput:
        """Logits (fp32) for input_ids (batch, L) after `state`. `logits_to_keep=k > 0` computes them for
        the last k positions only. The input is run `chunk_size` tokens at a time, carrying the state, so
        activation memory is bounded by the chunk, not by L (None or 0: one piece)."""
        length = input_ids.shape[1]
        if length == 0:
            raise ValueError("input_ids is empty")
        step = chunk_size or length
        keep_from = length - logits_to_keep if logits_to_keep > 0 else 0
        logits = []
        for start in range(0, length, step):
            out = self.backbone(input_ids[:, start : start + step], state=state, backend=backend)
            state = out.state
            hidden = out.last_hidden_state[:, max(keep_from - start, 0) :]
            if hidden.shape[1]:
                logits.append(self.lm_head(hidden.to(self.lm_head.weight.dtype)).float())
        return LMOutput(torch.cat(logits, dim=1) if len(logits) > 1 else logits[0], state)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None):
        """Load a checkpoint directory (hub ids and `bundled:NAME` are resolved to one by
        `mambapoc.models.registry`). `dtype` defaults to float32; `fp32_params` always stay fp32."""
        from mambapoc.models.checkpoint import read_config, read_weights

        path = Path(directory)
        config = cls.config_cls.from_dict(read_config(path))
        weights = read_weights(path)
        with torch.device("meta"):
            model = cls(config)
        expected = model.state_dict()
        if config.tie_word_embeddings:
            expected.pop("lm_head.weight")
        missing = [k for k in expected if k not in weights]
        if missing:
            raise UserError(f"{path}: the weights lack {len(missing)} tensors of this config, "
                            f"e.g. {missing[0]}")
        wrong = [k for k in expected if weights[k].shape != expected[k].shape]
        if wrong:
            k = wrong[0]
            raise UserError(f"{path}: {k} has shape {tuple(weights[k].shape)}, the config implies "
                            f"{tuple(expected[k].shape)}")
        dtype = dtype or torch.float32
        state = {k: weights[k].to(torch.float32 if k.rsplit(".", 1)[-1] in cls.fp32_params else dtype)
                 for k in expected}
        model.load_state_dict(state, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.backbone.embeddings.weight
        return model.to(device) if device is not None else model

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors, loadable by the matching transformers class."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            state.pop("lm_head.weight")
        config = self.config.to_dict()
        config["dtype"] = str(self.backbone.embeddings.weight.dtype).removeprefix("torch.")
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
