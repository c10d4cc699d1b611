"""One interface over our Mamba and any transformers causal LM, for timing and for task scoring.

Both families are driven the same way: a prefill of the prompt that keeps only the last position's
logits, then one token at a time from the carried state (Mamba's recurrent state, a Transformer's KV
cache). Scoring reuses the prefix state for every candidate continuation instead of re-reading the
context, which is what makes multiple-choice scoring at 64k tokens affordable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

# Long sequences are scored in pieces of this many tokens so that (piece x vocab) logits are the
# largest tensor ever materialised.
SCORE_CHUNK = 2048


@dataclass
class ModelInfo:
    spec: str
    name: str
    family: str  # "mamba" | "transformer"
    impl: str  # "ours" | "hf"
    params: int
    trained_length: int | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)


class LoadedModel:
    """A model with its tokenizer on a device. Subclasses supply `_forward` and the state accounting."""

    def __init__(self, info: ModelInfo, model, tokenizer, device: torch.device, dtype: torch.dtype):
        self.info = info
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype

    # --- what subclasses provide -------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, cache, last_only: bool):
        """Run `ids` (B, T) after `cache` (None = fresh). Returns (logits fp32, new cache)."""
        raise NotImplementedError

    def _branch(self, cache):
        """An independent copy of `cache` that later calls may extend without touching the original."""
        return copy.deepcopy(cache)

    def state_bytes(self, length: int, batch: int = 1) -> int:
        """Analytic size of the carried state after `length` tokens."""
        raise NotImplementedError

    # --- timing interface ----------------------------------------------------------------------
    def prefill(self, ids: torch.Tensor):
        logits, cache = self._forward(ids, None, last_only=True)
        return logits[:, -1], cache

    def decode_step(self, token: torch.Tensor, cache):
        logits, cache = self._forward(token, cache, last_only=True)
        return logits[:, -1], cache

    def as_ids(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        t = torch.tensor([ids], dtype=torch.long, device=self.device)
        return t.expand(batch, -1).contiguous() if batch > 1 else t

    # --- scoring interface (mambapoc.tasks.base.ScoringLM) --------------------------------------
    @torch.inference_mode()
    def continuation_logprobs(self, context_ids: list[int], continuations: list[list[int]]) -> list[list[float]]:
        last, cache = self._chunked_prefill(context_ids)
        first = torch.log_softmax(last[0].float(), dim=-1)
        out = []
        for cont in continuations:
            lps = [first[cont[0]].item()]
            if len(cont) > 1:
                logits, _ = self._forward(self.as_ids(cont[:-1]), self._branch(cache), last_only=False)
                logp = torch.log_softmax(logits[0].float(), dim=-1)
                target = torch.tensor(cont[1:], device=logp.device)
                lps += logp.gather(-1, target[:, None])[:, 0].tolist()
            out.append(lps)
        return out

    @torch.inference_mode()
    def token_logprobs(self, ids: list[int]) -> list[float]:
        out: list[float] = []
        cache = None
        prev_last = None
        for start in range(0, len(ids), SCORE_CHUNK):
            piece = ids[start : start + SCORE_CHUNK]
            logits, cache = self._forward(self.as_ids(piece), cache, last_only=False)
            logp = torch.log_softmax(logits[0].float(), dim=-1)
            target = torch.tensor(piece, device=logp.device)
            if prev_last is not None:
                out.append(prev_last[piece[0]].item())
            out += logp[:-1].gather(-1, target[1:, None])[:, 0].tolist()
            prev_last = logp[-1]
        return out

    @torch.inference_mode()
    def greedy(self, context_ids: list[int], max_new_tokens: int) -> list[int]:
        last, cache = self._chunked_prefill(context_ids)
        out: list[int] = []
        for _ in range(max_new_tokens):
            tok = int(last[0].argmax())
            out.append(tok)
            if len(out) == max_new_tokens:
                break
            last, cache = self.decode_step(self.as_ids([tok]), cache)
        return out

    def _chunked_prefill(self, ids: list[int]):
        cache = None
        last = None
        for start in range(0, len(ids), SCORE_CHUNK):
            logits, cache = self._forward(self.as_ids(ids[start : start + SCORE_CHUNK]), cache, last_only=True)
            last = logits[:, -1]
        return last, cache


class OursMamba(LoadedModel):
    """Our Mamba implementation (mambapoc.models.mamba) with its recurrent state."""

    def _forward(self, ids, cache, last_only):
        out = self.model(ids, state=cache, logits_to_keep=1 if last_only else 0)
        return out.logits, out.state

    def _branch(self, cache):
        return cache.clone()

    def state_bytes(self, length: int, batch: int = 1) -> int:
        from mambapoc.models.mamba import MambaState

        # The recurrent state does not grow with the context: `length` is deliberately unused.
        return MambaState.analytic_nbytes(self.model.config, batch=batch, dtype=self.dtype)


class HFCausal(LoadedModel):
    """Any transformers causal LM, run with its KV cache (or, for HF Mamba, its recurrent cache)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import inspect

        params = inspect.signature(self.model.forward).parameters
        # transformers 5 names the state `cache` (older releases: `past_key_values`).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._recurrent = self.info.family == "mamba"

    def _forward(self, ids, cache, last_only):
        kwargs = {self._cache_kw: cache, "use_cache": True}
        if last_only:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=ids, **kwargs)
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits, new_cache

    def state_bytes(self, length: int, batch: int = 1) -> int:
        cfg = self.model.config
        elt = torch.finfo(self.dtype).bits // 8
        if self._recurrent:
            inner = cfg.intermediate_size
            # SSM state is kept in fp32; the conv window in the model dtype.
            return cfg.num_hidden_layers * batch * inner * (cfg.state_size * 4 + cfg.conv_kernel * elt)
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return 2 * cfg.num_hidden_layers * batch * heads * head_dim * length * elt
