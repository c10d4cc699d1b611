"""Shared pieces of the task families: lengths, instances, the scoring-model protocol, exact-length
fitting (with noise mixed into the units) and the registry of families.

Length guarantee: an instance's `prompt` is the text, and `prompt_ids` is exactly
`tokenizer.encode(prompt, add_special_tokens=False)`: every prompt is encoded in full after it is
assembled, and a prompt is never longer than L tokens. Pieces (demonstrations, log records) are counted
once each with the same tokenizer to place the cut; the full encoding checks it, since tokens can merge
across the joins, and the cut moves until the prompt holds between L - L // 100 and L tokens (were the
merges ever to make that window unreachable, the longest prompt under L is kept; `length_tokens` in
each instance's meta is the exact count either way).
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Protocol, TypeVar

from mambapoc.errors import UserError
from mambapoc.tasks import noise

T = TypeVar("T")
Layout = Callable[[list[str], list[int]], str]

_WORD = re.compile(r"\b[a-zA-Z]{4,12}\b")

# Each pass re-encodes the whole prompt; two normally suffice, the rest absorb merges at the cut.
_FIT_PASSES = 12


class DatasetTooSmall(UserError):
    """The dataset cannot fill a prompt of the length asked for; the message says how many records it
    would take."""


class ScoringLM(Protocol):
    """What scoring needs from a model; the compare engine implements it for every model family."""

    tokenizer: Any

    def continuation_logprobs(
        self, context_ids: list[int], continuations: list[list[int]]
    ) -> list[list[float]]:
        """Per-token log-probabilities of each continuation given the context."""
        ...

    def token_logprobs(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i = 1 .. len(ids) - 1."""
        ...

    def greedy(self, context_ids: list[int], max_new_tokens: int) -> list[int]:
        """The greedy continuation of the context."""
        ...


@dataclass
class Instance:
    """One prompt with its answer. `scoring` says how it is judged: `choices` (log-likelihood over
    `choices`, one of which equals `answer`), `generate` (exact match of the greedy continuation's
    first line) or `loss` (per-token loss of `answer`, the held-out text that follows the prompt)."""

    task: str
    index: int
    prompt: str
    prompt_ids: list[int]
    answer: str
    scoring: str
    choices: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        return cls(**data)


@dataclass(frozen=True)
class Family:
    """A task family. `build(records, counter, length, n, seed, options)` returns instances;
    `score(lm, instances)` returns JSON-serialisable metrics. `options` maps each option to its default,
    whose type is the option's type."""

    name: str
    description: str
    options: Mapping[str, Any]
    build: Callable[..., list[Instance]]
    score: Callable[[ScoringLM, list[Instance]], dict]


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"unknown task {name!r}; tasks: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def resolve_options(family: Family, given: Mapping[str, Any]) -> dict[str, Any]:
    """The family's defaults overridden by `given`, each value converted to its default's type, so that
    options typed on a command line (`depths=0,50,100`, `symbol_labels=true`) work like Python values."""
    unknown = sorted(set(given) - set(family.options))
    if unknown:
        known = ", ".join(sorted(family.options))
        raise UserError(f"{family.name} has no option {', '.join(unknown)}; its options: {known}")
    resolved = dict(family.options)
    for key, value in given.items():
        resolved[key] = _convert(family.name, key, value, family.options[key])
    return resolved


def _convert(task: str, key: str, value: Any, default: Any) -> Any:
    where = f"{task} option {key}={value!r}"
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        kind = type(default[0]) if default else str
        return tuple(
            _convert(task, key, item.strip() if isinstance(item, str) else item, kind()) for item in items
        )
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in ("true", "yes", "1", "on"):
            return True
        if word in ("false", "no", "0", "off"):
            return False
        raise UserError(f"{where}: expected true or false")
    if isinstance(default, (int, float)):
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: expected a number") from None
        if isinstance(default, int) and isinstance(value, float) and number != value:
            raise UserError(f"{where}: expected a whole number")
        return number
    return str(value)


def instance_rng(seed: int, *parts: object) -> random.Random:
    """A generator for one purpose of one instance. String seeding is stable across processes (unlike
    `hash`), and separate streams per purpose keep a query's choice independent of how many
    demonstrations a tokenizer lets fit, so two models see the same questions."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


class Draw:
    """Items in a seeded random order without replacement, drawn lazily: one copy of the pool, then
    O(1) per draw, so a 64k prompt over a million records never shuffles them all."""

    def __init__(self, items: list, rng: random.Random):
        self._items = list(items)
        self._left = len(self._items)
        self._rng = rng

    def __len__(self) -> int:
        return self._left

    def pop(self):
        if not self._left:
            raise IndexError("pool exhausted")
        j = self._rng.randrange(self._left)
        self._left -= 1
        items = self._items
        items[j], items[self._left] = items[self._left], items[j]
        return items[self._left]


class TokenCounter:
    """Counts tokens with the model's own tokenizer, encoding each distinct text once."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._counts: dict[str, int] = {}

    def encode(self, text: str, offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        # verbose=False: prompts longer than the tokenizer's model_max_length are the point here.
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets, verbose=False)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]] if offsets else []

    def counts(self, texts: list[str]) -> list[int]:
        missing = sorted({t for t in texts if t not in self._counts})
        if missing:
            batch = self.tokenizer(missing, add_special_tokens=False, verbose=False)["input_ids"]
            self._counts.update(zip(missing, map(len, batch), strict=True))
        return [self._counts[t] for t in texts]

    def count(self, text: str) -> int:
        return self.counts([text])[0]

    def suffix(self, text: str, n_tokens: int) -> str:
        """The end of `text` that starts at a token boundary and holds its last `n_tokens` tokens."""
        ids, offsets = self.encode(text, offsets=True)
        return text[offsets[len(ids) - n_tokens][0] :]


@dataclass
class Fitted:
    """A prompt fitted to a length: `whole_units` units in full, and before them, when `dropped_chars` > 0,
    the end of one more whose first `dropped_chars` characters were cut (the only material ever dropped).
    `offsets` are the prompt tokens' character spans, when asked for."""

    prompt: str
    ids: list[int]
    offsets: list[tuple[int, int]]
    whole_units: int
    dropped_chars: int


def fit_to_length(
    counter: TokenCounter,
    length: int,
    reserved: int,
    units: Iterator[str],
    layout: Layout,
    shortage: Callable[[int], str],
    offsets: bool = False,
) -> Fitted:
    """Fill a prompt to `length` tokens with `units` (nearest to the question first, each ending with its
    own separator) around fixed parts that take `reserved` tokens.

    Whole units are taken while they fit; the next one is cut on its left at a token boundary so that the
    prompt lands within 1 % below `length`. `layout(units, counts)` gets the chosen units in prompt
    order (farthest first) and returns the whole prompt. When `units` runs out first, DatasetTooSmall says
    `shortage(about_how_many_units_are_needed)`."""
    if reserved >= length:
        raise UserError(
            f"{length} tokens is too short: the fixed part of the prompt (question, instructions) already "
            f"takes {reserved} tokens"
        )
    pulled: list[str] = []
    cum = [0]
    floor = length - length // 100
    budget = length - reserved
    best: Fitted | None = None
    for _ in range(_FIT_PASSES):
        while cum[-1] < budget:
            chunk = list(islice(units, 64))
            if not chunk:
                have = max(len(pulled), 1)
                raise DatasetTooSmall(shortage(math.ceil(budget * have / max(cum[-1], 1))))
            pulled += chunk
            for c in counter.counts(chunk):
                cum.append(cum[-1] + c)
        whole = bisect_right(cum, budget) - 1
        rest = budget - cum[whole]
        chosen = pulled[:whole][::-1]
        counts = [cum[i + 1] - cum[i] for i in range(whole)][::-1]
        dropped = 0
        if rest > 0:
            cut = counter.suffix(pulled[whole], rest)
            dropped = len(pulled[whole]) - len(cut)
            chosen.insert(0, cut)
            counts.insert(0, rest)
        prompt = layout(chosen, counts)
        ids, offs = counter.encode(prompt, offsets)
        fitted = Fitted(prompt, ids, offs, whole, dropped)
        if len(ids) <= length and (best is None or len(ids) > len(best.ids)):
            best = fitted
        if floor <= len(ids) <= length:
            return fitted
        budget = max(budget + length - len(ids), 0)
    if best is None:
        raise RuntimeError(f"could not fit a prompt under {length} tokens")
    return best


def fit_with_noise(
    counter: TokenCounter,
    length: int,
    reserved: int,
    units: Iterable[T],
    render: Callable[[T], str],
    layout: Layout,
    shortage: Callable[[int], str],
    *,
    rate: float,
    rng: random.Random,
    noisy: Callable[[T], T],
    offsets: bool = False,
) -> tuple[Fitted, list[tuple[T, bool]]]:
    """`fit_to_length` over `units`, each replaced by `noisy(unit)` with probability `rate` and written out
    by `render`; also returns the units the prompt holds whole, nearest to the question first, each with
    whether noise replaced it.

    Noise is mixed in before the units are counted, so the length guarantee holds for the prompt as shown.
    The fitter pulls units ahead of need and cuts one on its left, so only the whole ones are returned:
    every family reports its noise over the same units, and the rates compare across families."""
    taken: list[tuple[T, bool]] = []

    def rendered() -> Iterator[str]:
        for unit, replaced in noise.mix(units, rate, rng, noisy):
            taken.append((unit, replaced))
            yield render(unit)

    fitted = fit_to_length(counter, length, reserved, rendered(), layout, shortage, offsets)
    return fitted, taken[: fitted.whole_units]


def ending_with(tail: str) -> Layout:
    """The layout of a prompt that is its units in order then `tail` (the question, if any), for the
    families whose fixed part all comes after the context."""
    return lambda units, _counts: "".join(units) + tail


def length_meta(length: int, fitted: Fitted) -> dict[str, int]:
    return {"length_target": length, "length_tokens": len(fitted.ids), "dropped_chars": fitted.dropped_chars}


_PER_DATASET: OrderedDict = OrderedDict()


def per_dataset(fn: Callable) -> Callable:
    """Cache `fn(records, *args)` for the record lists in use. Training builds thousands of episodes
    from one list, and a full pass over it per episode would dominate. Record lists are never changed
    once loaded, so the list itself (kept alive by the cache, so its id cannot be reused) is the key;
    callers must not change what `fn` returns."""

    @functools.wraps(fn)
    def cached(records: list[dict], *args):
        key = (fn.__qualname__, id(records), args)
        hit = _PER_DATASET.get(key)
        if hit is not None and hit[0] is records and hit[1] == len(records):
            _PER_DATASET.move_to_end(key)
            return hit[2]
        value = fn(records, *args)
        _PER_DATASET[key] = (records, len(records), value)
        while len(_PER_DATASET) > 32:
            _PER_DATASET.popitem(last=False)
        return value

    return cached


def vocabulary(records: list[dict]) -> list[str]:
    """The distinct words of 4 to 12 letters in the records' messages, lowercased and sorted."""
    return sorted(
        {w.lower() for r in records for w in _WORD.findall(str(r.get("message") or r.get("text") or ""))}
    )
