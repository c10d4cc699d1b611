"""One interface over our Mamba and any transformers causal LM, for timing and for task scoring.

Both families are driven the same way: a prefill of the prompt in pieces of `prefill_chunk` tokens (0:
whole) that keeps only the last position's logits, then one token at a time from the carried state
(Mamba's recurrent state, a Transformer's KV cache). A Transformer's cache for a timed request is a
static one, allocated once for the prompt and the tokens to come, where the model supports it; and
`compile_decode` puts the decode step of any family through torch.compile. Scoring reuses the prefix
state for every candidate continuation instead of re-reading the context, which is what makes
multiple-choice scoring at 64k tokens affordable.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch

from mambapoc.models.hf_kernels import kernel_functions, ssm_kernels

# Long sequences are scored in pieces of this many tokens so that (piece x vocab) logits are the
# largest tensor ever materialised.
SCORE_CHUNK = 2048


@dataclass
class ModelInfo:
    spec: str
    name: str
    family: str  # "mamba" | "mamba2" | "hybrid" | "transformer" (models.footprint.family_of)
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
        self.prefill_chunk = 0
        self._step = self._decode
        self.compiled = False

    # --- what subclasses provide -------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, cache, last_only: bool):
        """Run `ids` (B, T) after `cache` (None = fresh). Returns (logits fp32, new cache)."""
        raise NotImplementedError

    def _branch(self, cache):
        """An independent copy of `cache` that later calls may extend without touching the original."""
        return copy.deepcopy(cache)

    @staticmethod
    def cache_bytes(cache) -> int:
        """Bytes of every distinct tensor a cache holds (attributes, lists, dicts): what decoding carries,
        measured on the object itself, whatever the family or the library's layout."""
        seen: set[int] = set()

        def walk(obj) -> int:
            if isinstance(obj, torch.Tensor):
                if obj.data_ptr() in seen or obj.device.type == "meta":
                    return 0
                seen.add(obj.data_ptr())
                return obj.numel() * obj.element_size()
            if isinstance(obj, (list, tuple)):
                return sum(walk(x) for x in obj)
            if isinstance(obj, dict):
                return sum(walk(x) for x in obj.values())
            if hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
                return sum(walk(x) for x in vars(obj).values())
            return 0

        return walk(cache)

    def _request_cache(self, batch: int, total: int):
        """The cache a timed request of `total` tokens starts from (None: the model makes its own)."""
        return None

    @property
    def decode_path(self) -> str:
        """How this model decodes, in words, for the cell and the report."""
        raise NotImplementedError

    # --- timing interface ----------------------------------------------------------------------
    def prefill(self, ids: torch.Tensor, new_tokens: int = 0):
        """The last position's logits and the cache after reading `ids`, `prefill_chunk` tokens at a time;
        the cache has room for `new_tokens` more."""
        cache = self._request_cache(ids.shape[0], ids.shape[1] + new_tokens)
        step = self.prefill_chunk or ids.shape[1]
        for start in range(0, ids.shape[1], step):
            logits, cache = self._forward(ids[:, start : start + step], cache, last_only=True)
        return logits[:, -1], cache

    def _decode(self, token: torch.Tensor, cache):
        logits, cache = self._forward(token, cache, last_only=True)
        return logits[:, -1], cache

    def decode_step(self, token: torch.Tensor, cache):
        return self._step(token, cache)

    def compile_decode(self) -> None:
        """Run the decode step through torch.compile (CUDA graphs too, on a GPU): the same for every family.
        Compilation happens on the first calls, which the warm-up makes."""
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self._step = torch.compile(self._decode, mode=mode)
        self.compiled = True

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
    """Our Mamba-1 or Mamba-2 implementation (mambapoc.models.mamba, .mamba2) with its recurrent state."""

    def _forward(self, ids, cache, last_only):
        # The adapter already feeds long inputs in pieces (`prefill_chunk`, scoring's SCORE_CHUNK).
        out = self.model(ids, state=cache, logits_to_keep=1 if last_only else 0, chunk_size=None)
        return out.logits, out.state

    @property
    def decode_path(self) -> str:
        return "recurrent state, fused update" + (", torch.compile" if self.compiled else "")

    def _branch(self, cache):
        return cache.clone()


class HFCausal(LoadedModel):
    """Any transformers causal LM, run with its KV cache (or, for HF Mamba, its recurrent cache)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import inspect

        params = inspect.signature(self.model.forward).parameters
        # transformers 5 names the state `cache` (older releases: `past_key_values`).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._recurrent = self.info.family != "transformer"  # a recurrent or hybrid cache of its own
        self.kv_cache = "static"  # "static" or "dynamic"; static falls back when the model refuses it
        self.static_refused: str | None = None
        self._pieces: bool | None = None  # continues_in_pieces(), once known
        self._explicit_positions = self.info.family == "hybrid" and "position_ids" in params
        # impl "ours" on a transformers model: its SSM mixers run on our kernels for the length of each call.
        self.kernel_functions = kernel_functions(self.model) if self.info.impl == "ours" else []

    def _request_cache(self, batch: int, total: int):
        if self._recurrent or self.kv_cache != "static" or self.static_refused:
            return None
        from transformers import StaticCache

        try:
            # Its tensors take the batch, device and dtype of the first keys written to them.
            return StaticCache(config=self.model.config, max_cache_len=total)
        except (TypeError, ValueError, NotImplementedError, AttributeError) as e:
            self.static_refused = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return None

    def prefill(self, ids: torch.Tensor, new_tokens: int = 0):
        try:
            return super().prefill(ids, new_tokens)
        except (TypeError, ValueError, NotImplementedError, RuntimeError) as e:
            if self._recurrent or self.kv_cache != "static" or self.static_refused:
                raise
            # The model has no static-cache path: measure it with the dynamic cache, and say so.
            self.static_refused = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return super().prefill(ids, new_tokens)

    @property
    def decode_path(self) -> str:
        if self._recurrent:
            path = f"{'hybrid' if self.info.family == 'hybrid' else 'recurrent'} cache (transformers)"
            if self._pieces is False:
                path += ", continuations token by token"
            if self.kernel_functions:
                path += ", SSM mixers on mambapoc kernels"
        elif self.kv_cache == "static" and not self.static_refused:
            path = "static KV cache"
        elif self.static_refused:
            path = f"dynamic KV cache (no static cache: {self.static_refused})"
        else:
            path = "dynamic KV cache"
        return path + (", torch.compile" if self.compiled else "")

    def _call(self, ids, cache, last_only):
        with ssm_kernels(self.model) if self.kernel_functions else contextlib.nullcontext():
            return self._call_model(ids, cache, last_only)

    def _call_model(self, ids, cache, last_only):
        kwargs = {self._cache_kw: cache, "use_cache": True}
        if last_only:
            kwargs["logits_to_keep"] = 1
        if self._explicit_positions and cache is not None:
            # Some hybrids' own position count goes wrong after a cache (Bamba 5.24 decodes at position 0);
            # the tokens the cache's attention layers hold are the truth.
            past = cache.get_seq_length()
            kwargs["position_ids"] = torch.arange(past, past + ids.shape[1], device=ids.device)[None].expand(
                ids.shape[0], -1)
        out = self.model(input_ids=ids, **kwargs)
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits, new_cache

    def _forward(self, ids, cache, last_only):
        if cache is None or ids.shape[1] == 1 or self.continues_in_pieces():
            return self._call(ids, cache, last_only)
        logits = []
        for t in range(ids.shape[1]):
            step, cache = self._call(ids[:, t : t + 1], cache, last_only)
            logits.append(step)
        return (logits[-1] if last_only else torch.cat(logits, dim=1)), cache

    @torch.inference_mode()
    def continues_in_pieces(self) -> bool:
        """Whether a call of several tokens after a cache continues the sequence exactly. transformers' own
        Mamba-1 mixers (Mamba, Falcon-Mamba, Jamba) restart such a call from a zero SSM state; such a
        model is fed continuations one token at a time. Found by trying, once: 4 + 4 tokens against 8 in
        one call, with the token-by-token path's own difference as the yardstick of rounding."""
        if self._pieces is None:
            ids = (torch.arange(1, 9, device=self.device) % self.model.config.vocab_size)[None]
            whole, _ = self._call(ids, None, False)
            _, cache = self._call(ids[:, :4], None, False)
            branch = self._branch(cache)
            pieces, _ = self._call(ids[:, 4:], cache, False)
            steps = []
            for t in range(4, 8):
                step, branch = self._call(ids[:, t : t + 1], branch, False)
                steps.append(step)
            rounding = (torch.cat(steps, dim=1) - whole[:, 4:]).abs().max().item()
            self._pieces = (pieces - whole[:, 4:]).abs().max().item() <= 10 * rounding + 1e-4
        return self._pieces
