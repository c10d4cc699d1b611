"""Judging instances with a ScoringLM and summarising the judgements with their uncertainty."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mambapoc.tasks.base import Instance, ScoringLM

_Z95 = 1.959963984540054
# Enough of the prompt's end to tokenize a join as the full prompt would.
_JOIN_CHARS = 64


@dataclass(frozen=True)
class Judgement:
    correct: bool
    confidence: float  # the model's probability of its own answer
    chance: float  # the accuracy of guessing on this instance


def _encode(lm: ScoringLM, text: str) -> list[int]:
    return lm.tokenizer.encode(text, add_special_tokens=False)


def continuation_ids(lm: ScoringLM, prompt: str, text: str) -> list[int]:
    """The tokens of `text` as they follow `prompt`: the encoding of the prompt's end plus `text`, past the
    prompt end's own tokens, as lm-eval splits context and continuation. Encoded alone, a continuation
    that follows without a space (`->ERROR`) would start a new word for tokenizers that mark word starts
    (SentencePiece's `▁`). When the join merges tokens across it, `text` is encoded alone."""
    end = prompt[-_JOIN_CHARS:]
    head, both = _encode(lm, end), _encode(lm, end + text)
    if len(both) > len(head) and both[: len(head)] == head:
        return both[len(head) :]
    return _encode(lm, text)


def choice_logprobs(lm: ScoringLM, inst: Instance) -> list[float]:
    """Total log-probability of each choice after the prompt (lm-eval's `acc`, not length-normalised)."""
    conts = [continuation_ids(lm, inst.prompt, c) for c in inst.choices]
    return [sum(lps) for lps in lm.continuation_logprobs(inst.prompt_ids, conts)]


def exact_match(generated: str, answer: str) -> bool:
    """The first line of the generation, stripped, equals the answer, stripped."""
    return generated.split("\n", 1)[0].strip() == answer.strip()


def judge(lm: ScoringLM, inst: Instance) -> Judgement:
    """Multiple choice picks the most likely choice, its confidence the softmax over the choices;
    generation decodes greedily a little past the answer's length, its confidence the probability of the
    first line it generated."""
    if inst.scoring == "choices":
        totals = choice_logprobs(lm, inst)
        top = max(totals)
        weights = [math.exp(t - top) for t in totals]
        pred = totals.index(top)
        return Judgement(
            inst.choices[pred] == inst.answer, weights[pred] / sum(weights), 1.0 / len(inst.choices)
        )
    if inst.scoring == "generate":
        out = lm.greedy(inst.prompt_ids, len(continuation_ids(lm, inst.prompt, inst.answer)) + 2)
        decode = lm.tokenizer.decode
        text = decode(out, skip_special_tokens=True)
        line = len(out)
        while line > 1 and "\n" in decode(out[:line], skip_special_tokens=True):
            line -= 1
        logprob = sum(lm.continuation_logprobs(inst.prompt_ids, [out[:line]])[0]) if out else -math.inf
        return Judgement(exact_match(text, inst.answer), math.exp(logprob), 0.0)
    raise ValueError(f"instance {inst.index} of {inst.task} is scored by {inst.scoring!r}, not by accuracy")


def wilson_interval(successes: int, n: int) -> list[float]:
    """95 % Wilson score interval for a proportion; sound at small n and at 0 or 100 %."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    denom = 1 + _Z95**2 / n
    centre = (p + _Z95**2 / (2 * n)) / denom
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / denom
    # Rounded so that float noise never reports a bound like 2.8e-17 for 0.
    return [round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)]


def bootstrap_ci(
    columns: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    seed: int = 0,
    resamples: int = 2000,
) -> list[float]:
    """95 % percentile bootstrap interval of `statistic(*columns)`, resampling rows (instances)."""
    arrays = [np.asarray(c, dtype=float) for c in columns]
    n = len(arrays[0])
    if n < 2:
        value = statistic(*arrays)
        return [value, value]
    rows = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    stats = np.array([statistic(*(a[r] for a in arrays)) for r in rows])
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def accuracy_metrics(judged: list[Judgement]) -> dict:
    n = len(judged)
    right = sum(j.correct for j in judged)
    return {
        "n": n,
        "accuracy": right / n if n else 0.0,
        "ci95": wilson_interval(right, n),
        "chance": sum(j.chance for j in judged) / n if n else 0.0,
        "calibration": [[round(j.confidence, 6), int(j.correct)] for j in judged],
    }


def accuracy_by(judged: list[Judgement], keys: list[str]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, j in zip(keys, judged, strict=True):
        groups[key].append(j.correct)
    return {key: sum(v) / len(v) for key, v in groups.items()}


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Loss in bits per UTF-8 byte of text: comparable across tokenizers, unlike loss per token."""
    return nll_nats / math.log(2) / n_bytes


def continuation_metrics(lm: ScoringLM, instances: list[Instance]) -> dict:
    """Bits per byte of each held-out text given its prompt, with a bootstrap interval over instances,
    and the mean per-token loss (nats) by position in the whole sequence, in buckets [2^k, 2^(k+1))."""
    nll, size = [], []
    by_bucket: dict[int, list[float]] = defaultdict(list)
    for inst in instances:
        target = continuation_ids(lm, inst.prompt, inst.answer)
        lps = lm.token_logprobs(inst.prompt_ids + target)
        nll.append(-sum(lps[-len(target) :]))
        size.append(len(inst.answer.encode("utf-8")))
        for position, lp in enumerate(lps, start=1):
            by_bucket[1 << (position.bit_length() - 1)].append(-lp)
    return {
        "n": len(instances),
        "bits_per_byte": bits_per_byte(sum(nll), sum(size)),
        "ci95": bootstrap_ci([nll, size], lambda a, b: bits_per_byte(a.sum(), b.sum())),
        "held_out_bytes": sum(size),
        "loss_by_position": [[start, sum(v) / len(v)] for start, v in sorted(by_bucket.items())],
    }
