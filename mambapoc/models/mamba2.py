"""The bundled Mamba-2 language model, weight-compatible with transformers' `Mamba2ForCausalLM`: the same
module names, so a checkpoint directory loads and saves unchanged. It runs on our SSD kernels
(`mambapoc.kernels.ssd_scan` / `ssd_state_update`) and shares RMSNorm and the causal convolution with
the Mamba-1 model (mamba.py).

Dimension names used in the shapes below:
    batch      sequences in the batch
    L          tokens in this call
    d_model    hidden_size, the residual stream
    d_inner    expand * d_model = nheads * headdim, the mixer's width
    nheads     num_heads; each head has one scalar decay A, one D and one dt per token
    headdim    head_dim, channels per head
    ngroups    n_groups; B and C are shared by the nheads / ngroups heads of a group
    N          state_size, the SSM state per channel
    conv_dim   d_inner + 2 ngroups N: x, B and C, which go through the causal convolution together
    k          conv_kernel

Activations are channel-last, (batch, L, channels), end to end: `in_proj` runs as three matmuls (z, xBC,
dt) so each output is contiguous, the convolution reads and writes (batch, L, conv_dim), and x, B and C
reach the scan as strided views of its output, with no copy.

Recurrent state (`Mamba2State`), per layer:
- conv: the last k - 1 inputs of the convolution, (batch, k - 1, conv_dim), in the model dtype;
- ssm: the SSD state, (batch, nheads, headdim, N), always fp32.

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
from mambapoc.kernels import causal_conv1d, gated_rms_norm, ssd_scan, ssd_state_update
from mambapoc.models.ssm import SSMLM, Backbone, LayerStates

# transformers >= 5 writes non-finite floats in config.json as {"__float__": "Infinity"} (strict JSON).
_FLOAT_TAG = "__float__"


@dataclass
class Mamba2Config:
    """transformers' Mamba2Config fields, with its defaults (those of mamba2-2.8b)."""

    num_heads: int = 128
    head_dim: int = 64
    vocab_size: int = 32768
    hidden_size: int = 4096
    state_size: int = 128
    num_hidden_layers: int = 64
    layer_norm_epsilon: float = 1e-5
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    expand: int = 2
    conv_kernel: int = 4
    n_groups: int = 8
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_rank: int | str = "auto"  # unused by Mamba-2 (no dt projection); kept for the round trip
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    time_step_limit: tuple[float, float] = (0.0, math.inf)
    rescale_prenorm_residual: bool = False
    use_cache: bool = True
    chunk_size: int = 256  # block length of the chunked SSD algorithm (reference and Triton backends)
    tie_word_embeddings: bool = False
    extra: dict = field(default_factory=dict)  # other config.json keys, written back unchanged

    def __post_init__(self):
        if self.time_step_rank == "auto":
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        self.time_step_rank = int(self.time_step_rank)
        try:
            lo, hi = (float(v[_FLOAT_TAG]) if isinstance(v, dict) else float(v) for v in self.time_step_limit)
        except (TypeError, ValueError, KeyError):
            raise UserError(f"Mamba-2 config: time_step_limit {self.time_step_limit!r} is not a pair of "
                            "numbers") from None
        self.time_step_limit = (lo, hi)
        problem = self._problem()
        if problem:
            raise UserError(f"Mamba-2 config: {problem}")

    def _problem(self) -> str | None:
        """What makes this config unusable, in a few words; None if nothing."""
        if self.hidden_act != "silu":
            return f"hidden_act {self.hidden_act!r} is not supported (only silu)"
        if self.intermediate_size != self.num_heads * self.head_dim:
            return (f"hidden_size * expand ({self.intermediate_size}) must equal num_heads * head_dim "
                    f"({self.num_heads} * {self.head_dim})")
        if self.n_groups < 1 or self.num_heads % self.n_groups:
            return f"n_groups ({self.n_groups}) must divide num_heads ({self.num_heads})"
        if not 0 <= self.time_step_limit[0] <= self.time_step_limit[1]:
            return f"time_step_limit {self.time_step_limit} is not a range of non-negative steps"
        return None

    @property
    def intermediate_size(self) -> int:
        return int(self.expand * self.hidden_size)

    @property
    def conv_dim(self) -> int:
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    @classmethod
    def from_dict(cls, d: dict) -> Mamba2Config:
        """From a transformers config.json dict, or from a mamba_ssm one (`d_model`, `n_layer`, `ssm_cfg`
        with layer "Mamba2"), whose weights have the same names."""
        if "model_type" not in d and "d_model" in d:
            d = _from_mamba_ssm_config(d)
        if d.get("model_type") != "mamba2":
            raise UserError(f"not a Mamba-2 checkpoint: config.json has model_type {d.get('model_type')!r}, "
                            "expected 'mamba2'")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        skip = {"model_type", "architectures", "torch_dtype", "dtype", "transformers_version"}
        extra = {k: v for k, v in d.items() if k not in names and k not in skip}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        limit = [{_FLOAT_TAG: "Infinity"} if v == math.inf else v for v in self.time_step_limit]
        return {"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"], **extra, **d,
                "time_step_limit": limit}


def _from_mamba_ssm_config(d: dict) -> dict:
    """mamba_ssm's MambaConfig + Mamba2 layer options (with mamba_ssm's defaults) as transformers fields."""
    ssm = d.get("ssm_cfg") or {}
    if ssm.get("layer") != "Mamba2" or d.get("attn_layer_idx") or d.get("d_intermediate"):
        raise UserError("this mamba_ssm checkpoint is not a plain Mamba-2 model (ssm_cfg layer 'Mamba2', no "
                        "attention or MLP layers)")
    unsupported = [k for k, bad in (("d_ssm", None), ("D_has_hdim", False), ("rmsnorm", True),
                                    ("norm_before_gate", False)) if ssm.get(k, bad) != bad]
    if unsupported or not d.get("rms_norm", True):
        raise UserError(f"this mamba_ssm Mamba-2 checkpoint uses options the model does not support: "
                        f"{', '.join(unsupported) or 'rms_norm false'}")
    multiple = d.get("pad_vocab_size_multiple", 8)
    expand, headdim = ssm.get("expand", 2), ssm.get("headdim", 64)
    return {
        "model_type": "mamba2",
        "vocab_size": -(-d.get("vocab_size", 50277) // multiple) * multiple,
        "hidden_size": d["d_model"],
        "num_hidden_layers": d["n_layer"],
        "expand": expand,
        "head_dim": headdim,
        "num_heads": expand * d["d_model"] // headdim,
        "state_size": ssm.get("d_state", 128),
        "n_groups": ssm.get("ngroups", 1),
        "conv_kernel": ssm.get("d_conv", 4),
        "chunk_size": ssm.get("chunk_size", 256),
        "time_step_limit": ssm.get("dt_limit", (0.0, math.inf)),
        "use_bias": ssm.get("bias", False),
        "use_conv_bias": ssm.get("conv_bias", True),
        "residual_in_fp32": d.get("residual_in_fp32", True),
        "tie_word_embeddings": d.get("tie_embeddings", True),
    }


class Mamba2State(LayerStates):
    """Everything a Mamba-2 needs to continue a sequence; its size does not depend on the length.
    conv: per layer (batch, k - 1, conv_dim), model dtype; ssm: per layer (batch, nheads, headdim, N), fp32."""

    @classmethod
    def zeros(cls, config: Mamba2Config, batch: int, device=None,
              dtype: torch.dtype = torch.float32) -> Mamba2State:
        """The state before any token: what a call with `state=None` starts from."""
        layers = range(config.num_hidden_layers)
        conv = (batch, config.conv_kernel - 1, config.conv_dim)
        ssm = (batch, config.num_heads, config.head_dim, config.state_size)
        return cls([torch.zeros(conv, device=device, dtype=dtype) for _ in layers],
                   [torch.zeros(ssm, device=device, dtype=torch.float32) for _ in layers])

    @classmethod
    def analytic_nbytes(cls, config: Mamba2Config, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        elt = torch.empty((), dtype=dtype).element_size()
        conv = (config.conv_kernel - 1) * config.conv_dim * elt
        ssm = config.num_heads * config.head_dim * config.state_size * 4
        return config.num_hidden_layers * batch * (conv + ssm)


class Mamba2GatedRMSNorm(nn.Module):
    """RMSNorm of y * silu(z) over groups of `group_size` channels (kernels.gated_rms_norm)."""

    def __init__(self, hidden_size: int, group_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.group_size = group_size
        self.eps = eps

    def forward(self, y: torch.Tensor, z: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """y, z (batch, L, d_inner) -> (batch, L, d_inner)."""
        return gated_rms_norm(y, z, self.weight, self.group_size, self.eps, backend)


class Mamba2Mixer(nn.Module):
    def __init__(self, config: Mamba2Config):
        super().__init__()
        d, k = config.intermediate_size, config.conv_kernel
        self.d_inner, self.conv_dim = d, config.conv_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.n_groups, self.state_size = config.n_groups, config.state_size
        self.chunk_size, self.dt_limit = config.chunk_size, config.time_step_limit
        self.in_proj = nn.Linear(config.hidden_size, d + self.conv_dim + self.num_heads, bias=config.use_bias)
        # Only a holder for the (conv_dim, 1, k) weight and its checkpoint name; see kernels.causal_conv1d.
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, k, groups=self.conv_dim, padding=k - 1,
                                bias=config.use_conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(self.num_heads))
        self.A_log = nn.Parameter(torch.empty(self.num_heads))
        self.D = nn.Parameter(torch.empty(self.num_heads))
        self.norm = Mamba2GatedRMSNorm(d, d // self.n_groups, config.layer_norm_epsilon)
        self.out_proj = nn.Linear(d, config.hidden_size, bias=config.use_bias)

    def _project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """in_proj as three matmuls, so z (batch, L, d_inner), xBC (batch, L, conv_dim) and dt (batch, L,
        nheads) come out contiguous, in the checkpoint's [z | xBC | dt] order."""
        w, b = self.in_proj.weight, self.in_proj.bias
        cuts = (0, self.d_inner, self.d_inner + self.conv_dim, w.shape[0])
        return tuple(F.linear(hidden, w[lo:hi], None if b is None else b[lo:hi])
                     for lo, hi in zip(cuts, cuts[1:], strict=False))

    def forward(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor,
                backend: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden (batch, L, d_model) -> (batch, L, d_model), the new conv and SSM states."""
        batch, length, _ = hidden.shape
        z, xBC, dt = self._project(hidden)
        xBC, conv_state = causal_conv1d(xBC, self.conv1d.weight[:, 0], self.conv1d.bias, conv_state, backend)
        x, B, C = torch.split(xBC, [self.d_inner, self.n_groups * self.state_size,
                                    self.n_groups * self.state_size], dim=-1)
        x = x.unflatten(-1, (self.num_heads, self.head_dim))  # (batch, L, nheads, headdim)
        B, C = (t.unflatten(-1, (self.n_groups, self.state_size)) for t in (B, C))  # (batch, L, ngroups, N)
        A = -torch.exp(self.A_log.float())
        D, dt_bias = self.D.float(), self.dt_bias.float()
        if length == 1 and not torch.is_grad_enabled():  # a decoding step; the scan is differentiable
            ssm_state = ssm_state.clone()
            y = ssd_state_update(ssm_state, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], D, None, dt_bias, True,
                                 self.dt_limit, backend=backend)[:, None]
        else:
            y, ssm_state = ssd_scan(x, dt, A, B, C, D, None, dt_bias, True, ssm_state, self.chunk_size,
                                    self.dt_limit, backend=backend)
        y = self.norm(y.reshape(batch, length, self.d_inner), z, backend)  # (batch, L, d_inner)
        return self.out_proj(y.to(hidden.dtype)), conv_state, ssm_state


class Mamba2Model(Backbone):
    mixer_cls = Mamba2Mixer
    state_cls = Mamba2State


class Mamba2LM(SSMLM):
    """Mamba-2 backbone + LM head, loading and saving transformers' Mamba2ForCausalLM format."""

    config_cls = Mamba2Config
    backbone_cls = Mamba2Model
    fp32_params = ("A_log", "D", "dt_bias")

    def _init_mixer(self, m: Mamba2Mixer) -> torch.Tensor:
        """A = -(1 .. nheads), D = 1; the bias is the per-head dt_bias."""
        m.A_log.copy_(torch.log(torch.arange(1, m.num_heads + 1, dtype=torch.float32)))
        m.D.fill_(1.0)
        return m.dt_bias
