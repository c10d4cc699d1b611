"""Robustness variants that apply to every family: noisy context, and lengths around the length a model
was trained on. Before a rollout, a model should be seen on both (boundary lengths, noisy logs).

Noise replaces context units (demonstrations, haystack or context records), never the question, the
needle or the held-out text, so the answer stays well defined while its support gets worse.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from mambapoc.errors import UserError

T = TypeVar("T")

KINDS = {
    "irrelevant": "a random record from elsewhere in the dataset, with no task structure",
    "corrupted": "the unit's own text with about a third of its letters and digits replaced at random",
    "flipped": "a demonstration with a wrong answer (few-shot families only)",
}

OPTIONS = {"noise_rate": 0.0, "noise_kind": "irrelevant"}

_CORRUPT_FRACTION = 0.3


def check(options: dict, kinds: Iterable[str]) -> tuple[float, str]:
    """The validated (rate, kind) of a family's options; `kinds` are those the family supports."""
    rate, kind = options["noise_rate"], options["noise_kind"]
    kinds = tuple(kinds)
    if not 0.0 <= rate < 1.0:
        raise UserError(f"noise_rate={rate} must be at least 0 and below 1 (0.25 = a quarter of the context)")
    if kind not in kinds:
        raise UserError(f"noise_kind={kind!r} is not one of {', '.join(kinds)} for this task")
    return rate, kind


def mix(
    units: Iterable[T], rate: float, rng: random.Random, noisy: Callable[[T], T]
) -> Iterator[tuple[T, bool]]:
    """Each unit, replaced by `noisy(unit)` with probability `rate`; the flag says which were."""
    for unit in units:
        if rate and rng.random() < rate:
            yield noisy(unit), True
        else:
            yield unit, False


def corrupt(text: str, rng: random.Random) -> str:
    """Letters and digits replaced at random by others of the same kind, so the record keeps its shape
    and length but loses its content."""
    out = []
    for ch in text:
        if ch.isascii() and ch.isalnum() and rng.random() < _CORRUPT_FRACTION:
            pool = string.digits if ch.isdigit() else string.ascii_letters
            ch = rng.choice(pool)
        out.append(ch)
    return "".join(out)


def meta(rate: float, kind: str, flags: list[bool]) -> dict:
    """What each instance records about its noise: requested rate and kind, units replaced, actual rate."""
    if not rate:
        return {"noise_rate": 0.0}
    replaced = sum(flags)
    return {
        "noise_rate": rate,
        "noise_kind": kind,
        "noise_units": replaced,
        "noise_rate_actual": round(replaced / len(flags), 4) if flags else 0.0,
    }


def boundary_lengths(trained_length: int, factors: Iterable[float] = (0.5, 1.0, 2.0, 4.0)) -> list[int]:
    """Lengths around the length a model was trained on, to see where it stops generalising."""
    return sorted({max(1, int(trained_length * f)) for f in factors})
