"""needle: retrieve a fact placed at a chosen depth of a haystack of real log records (RULER-style).

Facts come from the logs themselves when they hold any: a request id with the status it ended with
(`req-7f3a9c… status=502`, access-log status codes), or an identifier with another `name=value` field
of the same line (`user=<EMAIL_3> action=login`). A key seen with two different values is ambiguous and
never used. When no kind of fact has enough keys, facts are synthetic: a key made of two words of the
logs' own vocabulary and a number, whose value is another such word. Each instance records which
(`fact_source`).

The needle is stated once, as a line of its own between two records; records that mention any key of
the instance are left out of its haystack, so the key occurs only in its fact line and in the question.
The question ends with a cloze of the fact line (RULER's answer prefix), which base models can complete.
"""

from __future__ import annotations

import functools
import random
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Family,
    Instance,
    TokenCounter,
    fit_with_noise,
    instance_rng,
    length_meta,
    per_dataset,
    register,
    vocabulary,
)

NAME = "needle"
HEAD = "The log below contains lines that state facts. Answer the question after it.\n\n"
ANSWER_MODES = ("choices", "generate")
FACT_SOURCES = ("auto", "logs", "synthetic")
OPTIONS = {
    "depths": (0.0, 25.0, 50.0, 75.0, 100.0),
    "num_distractors": 0,
    "fact_source": "auto",
    "answer_mode": "choices",
    "num_choices": 4,
    **noise.OPTIONS,
}

_REQUEST_ID = re.compile(
    r"\b(req-[0-9a-zA-Z][0-9a-zA-Z-]{3,})|\brequest[_ -]?id[=:]\s*\"?([\w.:-]{4,})", re.I
)
_STATUS = re.compile(r"\b(?:status(?:_code)?|http_status)(?:[=:]\s*\"?|\s+)(\d{3})\b|\" (\d{3}) ", re.I)
_PAIR = re.compile(r"\b([A-Za-z_][\w.-]{0,30})=(\"[^\"]{1,40}\"|[^\s,;\"]+)")
_MASKED = re.compile(r"^<[A-Z]+_\d+>$")
_IDENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[\w.:-]{6,}$")
_MIN_VOCABULARY = 8


@dataclass(frozen=True, order=True)
class Relation:
    """How a kind of fact is stated, asked and completed."""

    kind: str
    subject: str = ""
    attribute: str = ""

    def line(self, key: str, value: str) -> str:
        return f"{self.prefix(key)} {value}"

    def prefix(self, key: str) -> str:
        if self.kind == "request-status":
            return f"request {key} ended with status"
        if self.kind == "field":
            return f"{self.subject} {key} had {self.attribute}"
        return f"the code for {key} is"

    def question(self, key: str) -> str:
        if self.kind == "request-status":
            return f"What status did request {key} end with?"
        if self.kind == "field":
            return f"What {self.attribute} did {self.subject} {key} have?"
        return f"What is the code for {key}?"


def _identifier(value: str) -> bool:
    return bool(_MASKED.match(value) or _IDENT.match(value))


@per_dataset
def log_facts(records: list[dict]) -> dict[Relation, dict[str, str]]:
    """Unambiguous key -> value facts per relation found in the records' messages."""
    seen: dict[Relation, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        message = str(r.get("message") or r.get("text") or "")
        request, status = _REQUEST_ID.search(message), _STATUS.search(message)
        if request and status:
            seen[Relation("request-status")][request[1] or request[2]].add(status[1] or status[2])
            continue
        pairs = [(k, v.strip('"')) for k, v in _PAIR.findall(message)]
        subjects = [(k, v) for k, v in pairs if _identifier(v)]
        if subjects:
            subject, key = subjects[0]
            for attribute, value in pairs:
                if attribute != subject and not _identifier(value) and len(value) <= 24:
                    seen[Relation("field", subject.lower(), attribute.lower())][key].add(value)
    return {
        rel: {k: next(iter(vals)) for k, vals in keys.items() if len(vals) == 1} for rel, keys in seen.items()
    }


@dataclass(frozen=True)
class Facts:
    """The facts a build draws from: found in the logs (`groups`: known key -> value per relation; `keys`:
    every (relation, key) in a fixed order, so that a seed always picks the same fact) or, when `source`
    is synthetic, made of the logs' `words`."""

    source: str
    groups: dict[Relation, dict[str, str]]
    keys: list[tuple[Relation, str]]
    words: list[str]

    def pick(self, rng: random.Random, distractors: int) -> tuple[Relation, list[tuple[str, str]], list[str]]:
        """The relation, the target fact then its distractors as (key, value), and the values a choice may
        take. Distractors share the target's relation, so only the key tells them apart."""
        if self.source == "logs":
            rel, key = self.keys[rng.randrange(len(self.keys))]
            known = self.groups[rel]
            others = rng.sample(sorted(k for k in known if k != key), distractors)
            return rel, [(k, known[k]) for k in [key, *others]], sorted(set(known.values()))
        keys: list[str] = []
        while len(keys) < distractors + 1:
            a, b = rng.sample(self.words, 2)
            candidate = f"{a}-{b}-{rng.randrange(1000, 10000)}"
            if candidate not in keys:
                keys.append(candidate)
        return Relation("synthetic"), [(k, rng.choice(self.words)) for k in keys], self.words


def choose_facts(records: list[dict], fact_source: str, distractors: int) -> Facts:
    """Facts of the relations with a key for the target and each distractor and two values to choose
    from: a relation with one value could be answered without reading. Synthetic facts stand in when no
    relation qualifies, unless `fact_source` asks for the logs' own."""
    groups: dict[Relation, dict[str, str]] = {}
    if fact_source != "synthetic":
        for rel, known in sorted(log_facts(records).items()):
            if len(known) >= distractors + 1 and len(set(known.values())) >= 2:
                groups[rel] = known
        if not groups and fact_source == "logs":
            raise UserError(
                f"fact_source=logs: found no {distractors + 1} request ids with their status, nor "
                "identifiers with another name=value field on their line, each with one value; use "
                "fact_source=auto or synthetic"
            )
    if groups:
        keys = sorted((rel, key) for rel, known in groups.items() for key in known)
        return Facts("logs", groups, keys, [])
    words = vocabulary(records)
    if len(words) < _MIN_VOCABULARY:
        raise UserError(
            f"{NAME} with synthetic facts needs log text with at least {_MIN_VOCABULARY} distinct words of 4 "
            f"to 12 letters; the dataset has {len(words)}"
        )
    return Facts("synthetic", {}, [], words)


def mentions_none(text: str, keys: list[str]) -> bool:
    """Whether `text` may enter the haystack: a record that mentioned a key would state or contradict the
    fact somewhere other than its fact line."""
    return not any(k in text for k in keys)


@dataclass(frozen=True)
class Placement:
    """The fact lines of an instance (the needle first, then its distractors), the depth in percent of
    the haystack each goes to, and the question that ends the prompt."""

    lines: list[str]
    depths: list[float]
    tail: str

    def slots(self, counts: list[int]) -> dict[int, list[str]]:
        """The fact lines that go before each haystack unit (index len(counts): after the last one). A
        line goes to the unit boundary nearest its depth in tokens, the earlier on a tie, never inside
        a record, so that the haystack stays real log lines and the fact reads as one more."""
        cum = [0, *accumulate(counts)]
        slots: dict[int, list[str]] = defaultdict(list)
        for line, depth in zip(self.lines, self.depths, strict=True):
            want = depth / 100 * cum[-1]
            j = bisect_left(cum, want)
            if j > 0 and (j == len(cum) or want - cum[j - 1] <= cum[j] - want):
                j -= 1
            slots[j].append(line)
        return slots

    def layout(self, hay: list[str], counts: list[int]) -> str:
        """The whole prompt around the haystack `hay` (whose units take `counts` tokens), for fit_to_length,
        which calls it again each time it moves the cut."""
        slots = self.slots(counts)
        parts = [HEAD]
        for j, unit in enumerate([*hay, ""]):
            parts += slots.get(j, [])
            parts.append(unit)
        return "".join(parts) + self.tail


def measured_depth(
    starts: list[int], needle: tuple[int, int], haystack: tuple[int, int]
) -> tuple[int, float]:
    """The index of the needle's first token and its depth in percent of the haystack, from the start
    character of each prompt token and the character spans of the needle and the haystack (which holds
    it). Depth is measured on the final encoding because the cut record and merges across joins move
    the needle off its placement; the needle's own tokens are left out of the span, so a needle after the
    last record is at 100 %."""
    first = bisect_left(starts, needle[0])
    hay_start = bisect_left(starts, haystack[0])
    hay_end = bisect_left(starts, haystack[1])
    needle_tokens = bisect_left(starts, needle[1]) - first
    span = max(hay_end - hay_start - needle_tokens, 1)
    return first, round(100 * (first - hay_start) / span, 2)


def answer_choices(values: list[str], pool: list[str], num_choices: int, rng: random.Random) -> list[str]:
    """Every stated value, so a distractor's value is a wrong choice and reading the wrong fact line is
    penalised, then values from `pool` up to `num_choices`; sorted, so the position tells nothing."""
    choices = sorted(set(values))
    extra = [v for v in pool if v not in choices]
    return sorted(choices + rng.sample(extra, max(0, min(len(extra), num_choices - len(choices)))))


@dataclass(frozen=True)
class NeedlePlan:
    """What the instances of one build share, checked and computed once: the options, the facts and the
    records' texts."""

    records: list[dict]
    texts: list[str]
    counter: TokenCounter
    length: int
    seed: int
    opts: dict
    rate: float
    kind: str
    facts: Facts

    @classmethod
    def create(
        cls, records: list[dict], counter: TokenCounter, length: int, seed: int, opts: dict
    ) -> NeedlePlan:
        """The plan for `opts`, every option checked before any instance is built, so a bad one fails at
        once rather than after the first instances."""
        rate, kind = noise.check(opts, ("irrelevant", "corrupted"))
        depths, distractors = opts["depths"], opts["num_distractors"]
        if not depths or any(not 0 <= d <= 100 for d in depths):
            raise UserError(f"depths={list(depths)} must be percentages between 0 and 100")
        if distractors < 0 or opts["num_choices"] < 2:
            raise UserError("num_distractors must be 0 or more and num_choices 2 or more")
        if opts["answer_mode"] not in ANSWER_MODES:
            raise UserError(f"answer_mode={opts['answer_mode']!r} is not one of {', '.join(ANSWER_MODES)}")
        if opts["fact_source"] not in FACT_SOURCES:
            raise UserError(f"fact_source={opts['fact_source']!r} is not one of {', '.join(FACT_SOURCES)}")
        if not records:
            raise UserError(f"{NAME} needs log records for its haystack; the dataset is empty")
        facts = choose_facts(records, opts["fact_source"], distractors)
        texts = [str(r.get("text") or "") for r in records]
        return cls(records, texts, counter, length, seed, opts, rate, kind, facts)

    def haystack(self, index: int, keys: list[str]) -> Iterator[str]:
        """Record texts backwards from a random record, as a window of the real log would run, wrapping
        once around the dataset, without those that mention a key."""
        start = instance_rng(self.seed, NAME, "anchor", index).randrange(len(self.texts))
        window = (i % len(self.texts) for i in range(start, start - len(self.texts), -1))
        return (self.texts[i] for i in window if mentions_none(self.texts[i], keys))

    def replacement(self, text: str, keys: list[str], rng: random.Random) -> str:
        """A noisy unit in place of `text`. An irrelevant record must mention no key either, or noise
        could state a fact; the search is bounded so that a dataset of nothing but key-bearing records
        cannot loop forever."""
        if self.kind == "corrupted":
            return noise.corrupt(text, rng)
        for _ in range(100):
            j = rng.randrange(len(self.texts))
            if mentions_none(self.texts[j], keys):
                return self.texts[j]
        return text

    def shortage(self, needed: int) -> str:
        """Says that key-bearing records are left out, or the count would not add up to the dataset."""
        return (
            f"{NAME} at {self.length} tokens needs about {needed} log records for its haystack (records that "
            f"mention a fact's key are left out); the dataset has {len(self.records)} records. Use a shorter "
            "length or a larger dataset"
        )

    def instance(self, index: int) -> Instance:
        """Instance `index`; its facts, placement, haystack and noise each come from their own generator,
        so that one does not shift when another draws more (say, a tokenizer needing more records)."""
        opts, counter = self.opts, self.counter
        depth = opts["depths"][index % len(opts["depths"])]
        rel, stated, pool = self.facts.pick(
            instance_rng(self.seed, NAME, "facts", index), opts["num_distractors"]
        )
        place_rng = instance_rng(self.seed, NAME, "place", index)
        keys = [k for k, _ in stated]
        target_key, gold = stated[0]
        placement = Placement(
            lines=[rel.line(k, v) + "\n" for k, v in stated],
            depths=[depth] + [place_rng.uniform(0, 100) for _ in stated[1:]],
            tail=f"\nQuestion: {rel.question(target_key)}\nAnswer: {rel.prefix(target_key)}",
        )
        choices = answer_choices([v for _, v in stated], pool, opts["num_choices"], place_rng)
        noise_rng = instance_rng(self.seed, NAME, "noise", index)
        reserved = counter.count(HEAD) + counter.count(placement.tail) + sum(counter.counts(placement.lines))
        fitted, shown = fit_with_noise(
            counter,
            self.length,
            reserved,
            self.haystack(index, keys),
            lambda text: text + "\n",
            placement.layout,
            self.shortage,
            rate=self.rate,
            rng=noise_rng,
            noisy=functools.partial(self.replacement, keys=keys, rng=noise_rng),
            offsets=True,
        )
        needle = placement.lines[0]
        at = fitted.prompt.index(needle)
        first, depth_actual = measured_depth(
            [s for s, _ in fitted.offsets],
            (at, at + len(needle)),
            (len(HEAD), len(fitted.prompt) - len(placement.tail)),
        )
        meta = {
            "fact_source": self.facts.source,
            "relation": rel.kind,
            "key": target_key,
            "needle": needle.rstrip("\n"),
            "distractors": [line.rstrip("\n") for line in placement.lines[1:]],
            "depth_percent": depth,
            "depth_actual_percent": depth_actual,
            "needle_token_index": first,
            "haystack_records": fitted.whole_units,
            **length_meta(self.length, fitted),
            **noise.meta(self.rate, self.kind, [replaced for _, replaced in shown]),
        }
        return Instance(
            task=NAME,
            index=index,
            prompt=fitted.prompt,
            prompt_ids=fitted.ids,
            answer=" " + gold,
            scoring=opts["answer_mode"],
            choices=[" " + c for c in choices] if opts["answer_mode"] == "choices" else [],
            meta=meta,
        )


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    plan = NeedlePlan.create(records, counter, length, seed, opts)
    return [plan.instance(index) for index in range(n)]


def score(lm, instances: list[Instance]) -> dict:
    judged = [scoring.judge(lm, inst) for inst in instances]
    depths = [f"{inst.meta['depth_percent']:g}" for inst in instances]
    return {**scoring.accuracy_metrics(judged), "by_depth": scoring.accuracy_by(judged, depths)}


register(
    Family(
        name=NAME,
        description="find a fact from the logs placed at a chosen depth of a haystack of log records",
        options=OPTIONS,
        build=build,
        score=score,
    )
)
