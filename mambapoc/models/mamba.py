"""The bundled Mamba (selective state-space) language model, weight-compatible with transformers'
`MambaForCausalLM`: the same module names, so a checkpoint directory loads and saves unchanged.

Activations are kept channel-last, (batch, L, d_inner), end to end: that is the layout the linear layers
produce and the one the kernels (`mambapoc.kernels`: convolution and selective scan) read fastest, so
the mixer never transposes a large tensor.

Recurrent state (`MambaState`), per layer:
- conv: the last `conv_kernel - 1` inputs of the convolution, (batch, conv_kernel - 1, d_inner), in the
  model dtype;
- ssm: the selective-scan state, (batch, d_inner, state_size), always fp32.

A call never modifies the state passed in; it returns a new one. Passing it back continues the sequence:
a long prefill in pieces gives the same result as one call, and a one-token call is a decoding step.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mambapoc.errors import UserError
from mambapoc.kernels import causal_conv1d, selective_scan, selective_state_update

# Parameters that stay fp32 whatever the model dtype, as in the reference implementation.
_FP32_PARAMS = ("A_log", "D")
# config.json model types this file runs: Mamba-1 and Falcon-Mamba (Mamba-1 with norms on dt, B and C).
MODEL_TYPES = ("mamba", "falcon_mamba")


@dataclass
class MambaConfig:
    """transformers' MambaConfig fields, with its defaults (which match the released checkpoints)."""

    vocab_size: int = 50280
    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    layer_norm_epsilon: float = 1e-5
    pad_token_id: int | None = 0
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0
    expand: int = 2
    conv_kernel: int = 4
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_rank: int | str = "auto"
    time_step_scale: float = 1.0
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_init_scheme: str = "random"
    time_step_floor: float = 1e-4
    rescale_prenorm_residual: bool = False
    use_cache: bool = True
    tie_word_embeddings: bool = True
    # Falcon-Mamba: a weightless RMSNorm on dt, B and C before the scan (None: plain Mamba-1).
    mixer_rms_eps: float | None = None
    extra: dict = field(default_factory=dict)  # other config.json keys, written back unchanged

    def __post_init__(self):
        if self.time_step_rank == "auto":
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        self.time_step_rank = int(self.time_step_rank)
        if self.hidden_act != "silu":
            raise UserError(f"Mamba config: hidden_act {self.hidden_act!r} is not supported (only silu)")

    @property
    def intermediate_size(self) -> int:
        return int(self.expand * self.hidden_size)

    @classmethod
    def from_dict(cls, d: dict) -> MambaConfig:
        """From a transformers config.json dict, or from a mamba_ssm one (`d_model`, `n_layer`, `ssm_cfg`)."""
        if "model_type" not in d and "d_model" in d:
            d = _from_mamba_ssm_config(d)
        if d.get("model_type") not in MODEL_TYPES:
            raise UserError(f"not a Mamba-1 checkpoint: config.json has model_type {d.get('model_type')!r}, "
                            f"expected one of {', '.join(MODEL_TYPES)}")
        if d["model_type"] == "falcon_mamba":
            d = {**d, "mixer_rms_eps": d.get("mixer_rms_eps", 1e-6)}
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        skip = {"model_type", "architectures", "intermediate_size", "torch_dtype", "dtype",
                "transformers_version"}
        extra = {k: v for k, v in d.items() if k not in names and k not in skip}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        if self.mixer_rms_eps is None:
            d.pop("mixer_rms_eps")
            kind = {"model_type": "mamba", "architectures": ["MambaForCausalLM"]}
        else:
            kind = {"model_type": "falcon_mamba", "architectures": ["FalconMambaForCausalLM"]}
        return {**kind, **extra, **d, "intermediate_size": self.intermediate_size}


def _from_mamba_ssm_config(d: dict) -> dict:
    ssm = d.get("ssm_cfg") or {}
    if ssm.get("layer", "Mamba1") != "Mamba1" or d.get("attn_layer_idx"):
        raise UserError("this mamba_ssm checkpoint is not a plain Mamba-1 model; only Mamba-1 is supported")
    if not d.get("rms_norm", True):
        raise UserError("this mamba_ssm checkpoint uses LayerNorm; only RMSNorm Mamba models are supported")
    multiple = d.get("pad_vocab_size_multiple", 8)
    return {
        "model_type": "mamba",
        "vocab_size": -(-d.get("vocab_size", 50277) // multiple) * multiple,
        "hidden_size": d["d_model"],
        "num_hidden_layers": d["n_layer"],
        "state_size": ssm.get("d_state", 16),
        "conv_kernel": ssm.get("d_conv", 4),
        "expand": ssm.get("expand", 2),
        "time_step_rank": ssm.get("dt_rank", "auto"),
        "use_bias": ssm.get("bias", False),
        "use_conv_bias": ssm.get("conv_bias", True),
        "residual_in_fp32": d.get("residual_in_fp32", True),
        "tie_word_embeddings": d.get("tie_embeddings", True),
    }


@dataclass
class MambaState:
    """Everything a Mamba needs to continue a sequence; its size does not depend on the length."""

    conv: list[torch.Tensor]  # per layer (batch, conv_kernel - 1, d_inner), model dtype
    ssm: list[torch.Tensor]  # per layer (batch, d_inner, state_size), fp32

    def clone(self) -> MambaState:
        return MambaState([c.clone() for c in self.conv], [s.clone() for s in self.ssm])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.conv, *self.ssm))

    @classmethod
    def zeros(cls, config: MambaConfig, batch: int, device=None,
              dtype: torch.dtype = torch.float32) -> MambaState:
        """The state before any token: what a call with `state=None` starts from."""
        d, k, n = config.intermediate_size, config.conv_kernel, config.state_size
        layers = config.num_hidden_layers
        return cls([torch.zeros(batch, k - 1, d, device=device, dtype=dtype) for _ in range(layers)],
                   [torch.zeros(batch, d, n, device=device, dtype=torch.float32) for _ in range(layers)])

    @classmethod
    def analytic_nbytes(cls, config: MambaConfig, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        elt = torch.empty((), dtype=dtype).element_size()
        per_layer = config.intermediate_size * ((config.conv_kernel - 1) * elt + config.state_size * 4)
        return config.num_hidden_layers * batch * per_layer


@dataclass
class MambaModelOutput:
    last_hidden_state: torch.Tensor  # after norm_f
    state: MambaState
    hidden_states: list[torch.Tensor] | None = None  # residual stream after each layer


@dataclass
class MambaLMOutput:
    logits: torch.Tensor  # fp32
    state: MambaState


class MambaRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class MambaMixer(nn.Module):
    def __init__(self, config: MambaConfig):
        super().__init__()
        d, n, r, k = config.intermediate_size, config.state_size, config.time_step_rank, config.conv_kernel
        self.d_inner, self.state_size, self.dt_rank, self.conv_kernel = d, n, r, k
        self.in_proj = nn.Linear(config.hidden_size, 2 * d, bias=config.use_bias)
        # Only a holder for the (d_inner, 1, k) weight and its checkpoint name; see kernels.causal_conv1d.
        self.conv1d = nn.Conv1d(d, d, k, groups=d, padding=k - 1, bias=config.use_conv_bias)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        self.A_log = nn.Parameter(torch.empty(d, n))
        self.D = nn.Parameter(torch.empty(d))
        self.out_proj = nn.Linear(d, config.hidden_size, bias=config.use_bias)
        self.mixer_rms_eps = config.mixer_rms_eps

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """Falcon-Mamba's weightless RMSNorm, in fp32, back in x's dtype."""
        h = x.float()
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.mixer_rms_eps)).to(x.dtype)

    def forward(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor,
                backend: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.d_inner
        w_in, b_in = self.in_proj.weight, self.in_proj.bias
        # Two matmuls instead of one plus a split: x and z come out contiguous, so no kernel copies them.
        x = F.linear(hidden, w_in[:d], None if b_in is None else b_in[:d])
        z = F.linear(hidden, w_in[d:], None if b_in is None else b_in[d:])
        x, conv_state = causal_conv1d(x, self.conv1d.weight[:, 0], self.conv1d.bias, conv_state, backend)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.state_size, self.state_size], dim=-1)
        if self.mixer_rms_eps is not None:
            dt, B, C = self._norm(dt), self._norm(B), self._norm(C)
        delta = F.linear(dt, self.dt_proj.weight)  # its bias is added inside the scan, in fp32
        A = -torch.exp(self.A_log.float())
        D, dt_bias = self.D.float(), self.dt_proj.bias.float()
        if x.shape[1] == 1 and not torch.is_grad_enabled():  # a decoding step; the scan is differentiable
            ssm_state = ssm_state.clone()
            y = selective_state_update(ssm_state, x[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D, z[:, 0],
                                       dt_bias, True, backend=backend)[:, None]
        else:
            y, ssm_state = selective_scan(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                                          C.transpose(1, 2), D, z.transpose(1, 2), dt_bias, True, ssm_state,
                                          backend=backend)
            y = y.transpose(1, 2)
        return self.out_proj(y.to(hidden.dtype)), conv_state, ssm_state


class MambaBlock(nn.Module):
    def __init__(self, config: MambaConfig):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = MambaRMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = MambaMixer(config)

    def forward(self, hidden, conv_state, ssm_state, backend):
        # Same casts as transformers: normalise in the weights' dtype, keep the residual in fp32 if asked.
        residual = hidden.float() if self.residual_in_fp32 else hidden
        out, conv_state, ssm_state = self.mixer(self.norm(hidden.to(self.norm.weight.dtype)), conv_state,
                                                ssm_state, backend)
        return residual + out, conv_state, ssm_state


class MambaModel(nn.Module):
    """The backbone: embeddings → Mamba blocks → final RMSNorm."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MambaBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_f = MambaRMSNorm(config.hidden_size, config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                state: MambaState | None = None, backend: str | None = None,
                output_hidden_states: bool = False) -> MambaModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if state is None:
            state = MambaState.zeros(self.config, hidden.shape[0], hidden.device, hidden.dtype)
        conv, ssm, per_layer = [], [], []
        for layer, c, s in zip(self.layers, state.conv, state.ssm, strict=True):
            hidden, c, s = layer(hidden, c, s, backend)
            conv.append(c)
            ssm.append(s)
            if output_hidden_states:
                per_layer.append(hidden)
        hidden_states = per_layer if output_hidden_states else None
        return MambaModelOutput(self.norm_f(hidden), MambaState(conv, ssm), hidden_states)


class MambaLM(nn.Module):
    """Mamba backbone + LM head, loading and saving transformers' MambaForCausalLM format."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.backbone = MambaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        if self.lm_head.weight.device.type != "meta":
            self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        """The reference initialisation: S4D-real A, D = 1, dt_proj bias = softplus^-1 of a log-uniform
        time step in [time_step_min, time_step_max]."""
        cfg = self.config
        nn.init.normal_(self.backbone.embeddings.weight, std=0.02)
        if not cfg.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        for block in self.backbone.layers:
            m = block.mixer
            s4d_real = torch.arange(1, m.state_size + 1, dtype=torch.float32)
            m.A_log.copy_(torch.log(s4d_real).expand_as(m.A_log))
            m.D.fill_(1.0)
            std = cfg.time_step_rank**-0.5 * cfg.time_step_scale
            if cfg.time_step_init_scheme == "constant":
                m.dt_proj.weight.fill_(std)
            else:
                m.dt_proj.weight.uniform_(-std, std)
            lo, hi = math.log(cfg.time_step_min), math.log(cfg.time_step_max)
            dt = torch.exp(torch.rand(m.d_inner) * (hi - lo) + lo).clamp(min=cfg.time_step_floor)
            m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            if m.conv1d.bias is not None:
                m.conv1d.bias.zero_()
            if cfg.rescale_prenorm_residual:
                m.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, state: MambaState | None = None, backend: str | None = None,
                logits_to_keep: int = 0, chunk_size: int | None = 2048) -> MambaLMOutput:
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
        return MambaLMOutput(torch.cat(logits, dim=1) if len(logits) > 1 else logits[0], state)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> MambaLM:
        """Load a transformers MambaForCausalLM (or mamba_ssm) checkpoint directory; hub ids and
        `bundled:NAME` are resolved to a directory by `mambapoc.models.registry`. `dtype` defaults to
        float32; A_log and D always stay fp32."""
        from mambapoc.models.checkpoint import read_config, read_weights

        path = Path(directory)
        config = MambaConfig.from_dict(read_config(path))
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
        state = {k: weights[k].to(torch.float32 if k.rsplit(".", 1)[-1] in _FP32_PARAMS else dtype)
                 for k in expected}
        model.load_state_dict(state, strict=False, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.backbone.embeddings.weight
        return model.to(device) if device is not None else model

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors, loadable by transformers' MambaForCausalLM."""
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
