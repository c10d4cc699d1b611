"""The two in-context learners: a backbone between a linear read-in and a scalar read-out.

The prompt is one token per x and one per label, as in Garg et al.: x_1, (y_1, 0, ..., 0), x_2, ...,
each label padded with zeros to the width of x. The read-out at the token of x_i predicts y_i from the
pairs before it, so one forward pass scores every number of in-context examples at once.

- Transformer: transformers' GPT2Model (sdpa attention) without positional embeddings, as in the
  paper: only the causal mask orders the prompt, so nothing ties the model to the training length.
- Mamba: our MambaModel backbone (mambapoc.models.mamba) with its reference initialisation.
Neither has a token embedding: the read-in makes the embeddings.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from mambapoc.errors import UserError
from mambapoc.fsutil import replace_dir

# The settings a recipe may give each family, with the paper's values as defaults.
FAMILY_SETTINGS = {
    "gpt2": {"hidden_size": 256, "num_hidden_layers": 12, "num_attention_heads": 8},
    "mamba": {"hidden_size": 256, "num_hidden_layers": 24, "state_size": 16, "expand": 2, "conv_kernel": 4},
}
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(batch, n, d) inputs and (batch, n) labels -> (batch, 2n, d) tokens x_1, y_1, x_2, y_2, ..."""
    labels = torch.zeros_like(xs)
    labels[..., 0] = ys
    return torch.stack((xs, labels), dim=2).flatten(1, 2)


class ICLModel(nn.Module, ABC):
    """Read-in -> backbone -> final norm -> read-out; subclasses supply the backbone."""

    family: str

    def __init__(self, n_dims: int, settings: dict):
        super().__init__()
        self.n_dims = n_dims
        self.settings = {**FAMILY_SETTINGS[self.family], **settings}
        hidden = self.settings["hidden_size"]
        self.read_in = nn.Linear(n_dims, hidden)
        self.read_out = nn.Linear(hidden, 1)

    @property
    def num_layers(self) -> int:
        return self.settings["num_hidden_layers"]

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Predictions of y_i at each x_i: (batch, n)."""
        hidden = self._last_hidden(self.read_in(interleave(xs, ys)))
        return self.read_out(hidden[:, ::2])[..., 0]

    def layer_predictions(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """The read-out applied, through the final norm, to the residual stream at the input and after
        each layer: (layers + 1, batch, n). The last row is `forward`'s output."""
        streams = self._residual_streams(self.read_in(interleave(xs, ys)))
        return torch.stack([self.read_out(self.final_norm(s[:, ::2]))[..., 0] for s in streams])

    @property
    @abstractmethod
    def final_norm(self) -> nn.Module: ...

    @abstractmethod
    def _last_hidden(self, embeds: torch.Tensor) -> torch.Tensor:
        """The backbone's output, after its final norm."""

    @abstractmethod
    def _residual_streams(self, embeds: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream at the input and after each layer, before the final norm."""


class _NoPositions(nn.Module):
    """Stands in for GPT-2's position table: adds nothing, holds no weights, accepts any length."""

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), device=position_ids.device)


class TransformerICL(ICLModel):
    family = "gpt2"

    def __init__(self, n_dims: int, settings: dict):
        from transformers import GPT2Config, GPT2Model

        super().__init__(n_dims, settings)
        s = self.settings
        config = GPT2Config(n_embd=s["hidden_size"], n_layer=s["num_hidden_layers"], n_head=s["num_attention_heads"],
                            vocab_size=1, n_positions=1, bos_token_id=None, eos_token_id=None, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, attn_implementation="sdpa")
        self.backbone = GPT2Model(config)
        self.backbone.wpe = _NoPositions()
        self.backbone.wte = None

    @property
    def final_norm(self) -> nn.Module:
        return self.backbone.ln_f

    def _last_hidden(self, embeds):
        return self.backbone(inputs_embeds=embeds).last_hidden_state

    def _residual_streams(self, embeds):
        # GPT2Model returns per-layer states only through its output-capturing machinery, whose last
        # entry is already normalised; hooks on the blocks give the raw residual stream of every layer.
        streams = [embeds]
        hooks = [b.register_forward_hook(lambda _m, _i, out: streams.append(out)) for b in self.backbone.h]
        try:
            self.backbone(inputs_embeds=embeds)
        finally:
            for h in hooks:
                h.remove()
        return streams


class MambaICL(ICLModel):
    family = "mamba"

    def __init__(self, n_dims: int, settings: dict):
        from mambapoc.models.mamba import MambaConfig, MambaLM

        super().__init__(n_dims, settings)
        s = self.settings
        config = MambaConfig(vocab_size=1, hidden_size=s["hidden_size"], num_hidden_layers=s["num_hidden_layers"],
                             state_size=s["state_size"], expand=s["expand"], conv_kernel=s["conv_kernel"],
                             pad_token_id=None, bos_token_id=None, eos_token_id=None)
        # MambaLM applies the reference initialisation of A, D and the time step; only its backbone is kept.
        self.backbone = MambaLM(config).backbone
        self.backbone.embeddings = None

    @property
    def final_norm(self) -> nn.Module:
        return self.backbone.norm_f

    def _last_hidden(self, embeds):
        return self.backbone(inputs_embeds=embeds).last_hidden_state

    def _residual_streams(self, embeds):
        return [embeds, *self.backbone(inputs_embeds=embeds, output_hidden_states=True).hidden_states]


_CLASSES = {"gpt2": TransformerICL, "mamba": MambaICL}


def build_model(family: str, n_dims: int, settings: dict, seed: int) -> ICLModel:
    if family not in _CLASSES:
        raise UserError(f"unknown model family {family!r} (known: {', '.join(_CLASSES)})")
    unknown = set(settings) - set(FAMILY_SETTINGS[family])
    if unknown:
        raise UserError(f"{family} model: unknown setting {sorted(unknown)[0]!r} "
                        f"(known: {', '.join(FAMILY_SETTINGS[family])})")
    torch.manual_seed(seed)
    return _CLASSES[family](n_dims, settings)


def save_model(model: ICLModel, directory: Path) -> None:
    from safetensors.torch import save_file

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        config = {"family": model.family, "n_dims": model.n_dims, "settings": model.settings}
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": "pt"})
        replace_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_config(directory: Path) -> dict:
    try:
        return json.loads((directory / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{directory}: cannot read {CONFIG} ({e})") from None


def load_model(directory: Path) -> ICLModel:
    from safetensors.torch import load_file

    config = read_config(directory)
    model = build_model(config["family"], config["n_dims"], config["settings"], seed=0)
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
    except (OSError, RuntimeError) as e:
        raise UserError(f"{directory}: cannot load {WEIGHTS} ({str(e).splitlines()[0]})") from None
    return model.eval()
