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

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from mambapoc.errors import UserError
from mambapoc.kernels import causal_conv1d, selective_scan, selective_state_update
from mambapoc.models.ssm import SSMLM, Backbone, LayerStates

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


class MambaState(LayerStates):
    """Everything a Mamba needs to continue a sequence; its size does not depend on the length.
    conv: per layer (batch, conv_kernel - 1, d_inner), model dtype; ssm: per layer (batch, d_inner,
    state_size), fp32."""

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


class MambaModel(Backbone):
    mixer_cls = MambaMixer
    state_cls = MambaState


class MambaLM(SSMLM):
    """Mamba backbone + LM head, loading and saving transformers' MambaForCausalLM (and FalconMamba) format."""

    config_cls = MambaConfig
    backbone_cls = MambaModel
    fp32_params = ("A_log", "D")

    def _init_mixer(self, m: MambaMixer) -> torch.Tensor:
        """S4D-real A, D = 1, dt_proj weight by `time_step_init_scheme`; the bias is dt_proj's."""
        cfg = self.config
        s4d_real = torch.arange(1, m.state_size + 1, dtype=torch.float32)
        m.A_log.copy_(torch.log(s4d_real).expand_as(m.A_log))
        m.D.fill_(1.0)
        std = cfg.time_step_rank**-0.5 * cfg.time_step_scale
        if cfg.time_step_init_scheme == "constant":
            m.dt_proj.weight.fill_(std)
        else:
            m.dt_proj.weight.uniform_(-std, std)
        return m.dt_proj.bias
