"""Shared pieces of the task tests: synthetic log records, two different tokenizers trained on them,
and an induction n-gram model that implements ScoringLM and can copy from its context."""

from __future__ import annotations

import functools
import math
import random
from collections import Counter

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

_MESSAGES = {
    "INFO": [
        "request req-{hex} ended with status {ok}",
        "user <EMAIL_{k}> opened dashboard in {ms} ms",
        "scheduled job sync-{d} completed",
    ],
    "WARN": [
        "cache miss for key <IP_{k}> took {ms} ms",
        "slow query on table orders took {ms} ms",
        "retrying upstream call to billing",
    ],
    "ERROR": [
        "request req-{hex} ended with status {bad}",
        "connection to database shard-{d} failed after {d} retries",
        "disk quota exceeded on volume vol-{d}",
    ],
}
_COMPONENTS = ["api", "db", "auth", "cache"]


def make_records(n: int = 600, seed: int = 0) -> list[dict]:
    """Records in the dataset format, each level with its own message templates, request ids unique."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        level = rng.choice(sorted(_MESSAGES))
        message = rng.choice(_MESSAGES[level]).format(
            hex=f"{rng.getrandbits(24):06x}",
            ok=rng.choice([200, 201, 204]),
            bad=rng.choice([500, 502, 503]),
            k=rng.randrange(20),
            ms=rng.randrange(5, 900),
            d=rng.randrange(8),
        )
        component = _COMPONENTS[i % len(_COMPONENTS)]
        stamp = f"2024-05-01T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        records.append(
            {
                "id": i,
                "source": "app.log",
                "line": i + 1,
                "timestamp": stamp,
                "level": level,
                "level_raw": level,
                "component": component,
                "message": message,
                "template_id": None,
                "template": None,
                "label": None,
                "text": f"{stamp} {level} [{component}] {message}",
            }
        )
    return records


def _wrap(tok: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def bpe_tokenizer(records: list[dict]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([r["text"] for r in records[:300]], trainer)
    return _wrap(tok)


def word_tokenizer(records: list[dict]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False)
    tok.train_from_iterator([r["text"] for r in records[:300]], trainer)
    return _wrap(tok, unk_token="[UNK]")


class InductionLM:
    """Predicts the tokens that followed the longest earlier occurrence of the current suffix (up to
    `order` tokens), with a uniform floor: a caricature of an induction head that really copies."""

    def __init__(self, tokenizer, order: int = 16, floor: float = 0.01):
        self.tokenizer = tokenizer
        self.order = order
        self.floor = floor
        self.vocab = len(tokenizer)

    def _learn(self, seen: list[dict], ids: list[int], i: int) -> None:
        for k in range(1, min(self.order, i) + 1):
            seen[k].setdefault(tuple(ids[i - k : i]), Counter())[ids[i]] += 1

    def _follow(self, seen: list[dict], ids: list[int], i: int) -> Counter | None:
        for k in range(min(self.order, i), 0, -1):
            follow = seen[k].get(tuple(ids[i - k : i]))
            if follow:
                return follow
        return None

    def _logprobs(self, ids: list[int], start: int) -> list[float]:
        """log p(ids[i] | ids[:i]) for i in [start, len(ids))."""
        seen: list[dict] = [{} for _ in range(self.order + 1)]
        out = []
        for i in range(1, len(ids)):
            if i >= start:
                follow = self._follow(seen, ids, i)
                p = 1 / self.vocab
                if follow:
                    p = (1 - self.floor) * follow[ids[i]] / sum(follow.values()) + self.floor / self.vocab
                out.append(math.log(p))
            self._learn(seen, ids, i)
        return out

    def token_logprobs(self, ids: list[int]) -> list[float]:
        return self._logprobs(ids, 1)

    def continuation_logprobs(
        self, context_ids: list[int], continuations: list[list[int]]
    ) -> list[list[float]]:
        return [self._logprobs(context_ids + c, len(context_ids)) for c in continuations]

    def greedy(self, context_ids: list[int], max_new_tokens: int) -> list[int]:
        ids = list(context_ids)
        seen: list[dict] = [{} for _ in range(self.order + 1)]
        for i in range(1, len(ids)):
            self._learn(seen, ids, i)
        for _ in range(max_new_tokens):
            follow = self._follow(seen, ids, len(ids))
            ids.append(min(follow, key=lambda t: (-follow[t], t)) if follow else 0)
            self._learn(seen, ids, len(ids) - 1)
        return ids[len(context_ids) :]


@functools.cache
def records() -> list[dict]:
    return make_records()


@functools.cache
def bpe() -> PreTrainedTokenizerFast:
    return bpe_tokenizer(records())


@functools.cache
def words() -> PreTrainedTokenizerFast:
    return word_tokenizer(records())
