"""fewshot-classify: predict a record's label from as many `input -> label` demonstrations as fit.

The prompt follows lm-eval's layout: each demonstration is `query_template` with the input, then
`target_delimiter` and the label, then `fewshot_delimiter`; the prompt ends with the query's
`query_template`, and each candidate continuation is `target_delimiter + label`. The context is the tail
of a long stream of demonstrations, so the farthest one may be cut on its left to reach the length.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import count, islice

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Draw,
    Family,
    Instance,
    TokenCounter,
    ending_with,
    fit_with_noise,
    instance_rng,
    length_meta,
    per_dataset,
    register,
)

NAME = "fewshot-classify"
LABEL_FIELDS = ("label", "level", "component", "template_id")
# `text` spells out the level and the component, which would give the answer away.
_INPUT_FOR = {"label": "text", "level": "message", "component": "message", "template_id": "text"}
_SYLLABLES = ("da", "ko", "mi", "zu", "fe", "ra", "po", "ti", "lu", "ve", "ne", "so", "gu", "bi", "ha", "jo")
_SPACES = re.compile(r"\s+")
_ELLIPSIS = " …"

OPTIONS = {
    "label_field": "auto",
    "input_field": "auto",
    "symbol_labels": False,
    "sampler": "balanced",
    "max_classes": 8,
    "max_demo_chars": 200,
    "query_template": "{input}\nLabel:",
    "target_delimiter": " ",
    "fewshot_delimiter": "\n\n",
    **noise.OPTIONS,
}
SAMPLERS = ("balanced", "random")


def _label_of(record: dict, field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    text = _SPACES.sub(" ", str(value)).strip()
    if not text:
        return None
    return f"T{text}" if field == "template_id" else text


@per_dataset
def _records_by_label(records: list[dict], label_field: str, input_field: str) -> dict[str, list[int]]:
    """The indices of the records that have an input, by their label."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        label = _label_of(r, label_field)
        if label is not None and r.get(input_field):
            out[label].append(i)
    return dict(out)


def _pick_label_field(records: list[dict], requested: str) -> str:
    if requested != "auto":
        if requested not in LABEL_FIELDS:
            raise UserError(f"label_field={requested!r} is not one of auto, {', '.join(LABEL_FIELDS)}")
        return requested
    for field in LABEL_FIELDS:
        if len({_label_of(r, field) for r in records} - {None}) >= 2:
            return field
    raise UserError(
        f"{NAME} needs a field to predict with at least 2 distinct values; none of "
        f"{', '.join(LABEL_FIELDS)} has 2 in the {len(records)} records"
    )


def shorten(text: str, max_chars: int) -> tuple[str, int]:
    """Whitespace collapsed to single spaces (one demonstration per block), then cut at a word boundary
    to at most `max_chars` characters with a visible ellipsis; returns the text and the characters
    dropped."""
    flat = _SPACES.sub(" ", text).strip()
    if max_chars <= 0 or len(flat) <= max_chars:
        return flat, 0
    room = max(max_chars - len(_ELLIPSIS), 1)
    cut = flat[:room]
    space = cut.rfind(" ")
    if space > room // 2:
        cut = cut[:space]
    return cut + _ELLIPSIS, len(flat) - len(cut)


def symbol_names(labels: list[str], rng) -> dict[str, str]:
    """Arbitrary two-syllable names for the labels, none of which shares a substring relation with any
    original label, so a prompt carries no label name at all."""
    lowered = [label.lower() for label in labels]
    pool = sorted({a + b for a in _SYLLABLES for b in _SYLLABLES})
    pool = [s for s in pool if not any(s in low or low in s for low in lowered)]
    if len(pool) < len(labels):
        raise UserError(f"symbol_labels supports up to {len(pool)} classes; lower max_classes")
    return dict(zip(labels, rng.sample(pool, len(labels)), strict=True))


def demonstrations(
    by_class: dict[str, list[int]], query: int, sampler: str, rng: random.Random
) -> Iterator[tuple[int, str]]:
    """(record, label) pairs without replacement, never the query, which would give its answer away.
    `balanced` visits the classes round robin in a fresh random order each round until every class runs
    out, so no class dominates the nearest demonstrations; `random` draws from all, in the data's
    proportions."""
    if sampler == "random":
        pool = Draw([(i, c) for c, idx in by_class.items() for i in idx if i != query], rng)
        while len(pool):
            yield pool.pop()
        return
    draws = {c: Draw([i for i in idx if i != query], rng) for c, idx in by_class.items()}
    order = sorted(draws)
    while any(len(d) for d in draws.values()):
        rng.shuffle(order)
        for c in order:
            if len(draws[c]):
                yield draws[c].pop(), c


def queries(by_class: dict[str, list[int]], seed: int) -> Iterator[tuple[str, int]]:
    """The gold class and query record of each instance in turn. Classes take turns in a seeded order, so
    any n instances are as balanced as n allows; each class's records are drawn without replacement, and
    once they run out (more instances than records) they are drawn again, to repeat with other
    demonstrations."""
    order = sorted(by_class)
    instance_rng(seed, NAME, "classes").shuffle(order)
    draws = {c: Draw(by_class[c], instance_rng(seed, NAME, "queries", c)) for c in order}
    for index in count():
        gold = order[index % len(order)]
        if not len(draws[gold]):
            draws[gold] = Draw(by_class[gold], instance_rng(seed, NAME, "queries", gold, index))
        yield gold, draws[gold].pop()


@dataclass(frozen=True)
class Demo:
    """A unit of the context: a record's shortened input with its label, and the characters shortening
    dropped; with no label, a bare log line that noise put in place of a demonstration."""

    text: str
    label: str | None
    cut: int


@dataclass(frozen=True)
class FewshotPlan:
    """What the instances of one build share, checked and computed once: the options, the fields, the
    classes used with their records, and the name each class is shown by."""

    records: list[dict]
    counter: TokenCounter
    length: int
    seed: int
    opts: dict
    rate: float
    kind: str
    label_field: str
    input_field: str
    by_class: dict[str, list[int]]
    names: dict[str, str]

    @classmethod
    def create(
        cls, records: list[dict], counter: TokenCounter, length: int, seed: int, opts: dict
    ) -> FewshotPlan:
        """The plan for `opts`, every option checked and the classes chosen before any instance is
        built; symbol names are drawn once, so every instance of a build names a class alike."""
        rate, kind = noise.check(opts, noise.KINDS)
        if opts["sampler"] not in SAMPLERS:
            raise UserError(f"sampler={opts['sampler']!r} is not one of {', '.join(SAMPLERS)}")
        if "{input}" not in opts["query_template"]:
            raise UserError("query_template must contain {input}")
        label_field = _pick_label_field(records, opts["label_field"])
        input_field = _INPUT_FOR[label_field] if opts["input_field"] == "auto" else opts["input_field"]
        if not any(r.get(input_field) for r in records):
            raise UserError(f"input_field={input_field!r}: no record has such a field")
        indexed = _records_by_label(records, label_field, input_field)
        # Every class needs a query and at least one demonstration.
        ranked = sorted((c for c in indexed if len(indexed[c]) >= 2), key=lambda c: (-len(indexed[c]), c))
        classes = sorted(ranked[: opts["max_classes"]])
        if len(classes) < 2:
            raise UserError(
                f"{NAME} needs at least 2 values of {label_field!r} with 2 or more records each; found "
                f"{len(classes)} ({', '.join(classes) or 'none'})"
            )
        shown = symbol_names(classes, instance_rng(seed, NAME, "symbols")) if opts["symbol_labels"] else {}
        names = {c: shown.get(c, c) for c in classes}
        by_class = {c: indexed[c] for c in classes}
        return cls(
            records, counter, length, seed, opts, rate, kind, label_field, input_field, by_class, names
        )

    @property
    def classes(self) -> list[str]:
        """The classes used, sorted, so that choices and meta list them in the same order."""
        return list(self.by_class)

    def demo(self, i: int, label: str | None) -> Demo:
        """Record `i` as a unit, shortened like every input. A labelled one shows its input field; an
        unlabelled one (noise) its `text`, the log line as written, since it stands outside the
        demonstration format."""
        field = self.input_field if label is not None else "text"
        text, cut = shorten(str(self.records[i].get(field) or ""), self.opts["max_demo_chars"])
        return Demo(text, label, cut)

    def render(self, demo: Demo) -> str:
        """lm-eval's layout for a demonstration; noise's bare log line keeps only the delimiter, so it
        reads as an interruption of the demonstrations, not as one."""
        if demo.label is None:
            return demo.text + self.opts["fewshot_delimiter"]
        return (
            self.opts["query_template"].replace("{input}", demo.text)
            + self.opts["target_delimiter"]
            + self.names[demo.label]
            + self.opts["fewshot_delimiter"]
        )

    def noisy(self, demo: Demo, rng: random.Random) -> Demo:
        """`demo` with noise of the build's kind: a random record in its place, another class's label, or
        its input corrupted after shortening, so that the prompt shows what its meta counts."""
        if self.kind == "irrelevant":
            return self.demo(rng.randrange(len(self.records)), None)
        if self.kind == "flipped":
            return replace(demo, label=rng.choice([c for c in self.classes if c != demo.label]))
        return replace(demo, text=noise.corrupt(demo.text, rng))

    def shortage(self, needed: int) -> str:
        """Counts only the records of the classes used, the ones that can be demonstrations."""
        usable = sum(len(v) for v in self.by_class.values())
        return (
            f"{NAME} at {self.length} tokens needs about {needed + 1} records labelled by {self.label_field} "
            f"(1 query + ~{needed} demonstrations); the dataset has {usable} in the {len(self.by_class)} "
            f"classes used. Use a shorter length or a larger dataset"
        )

    def instance(self, index: int, gold: str, query: int) -> Instance:
        """Instance `index`, asking for `query` of class `gold`; its demonstrations and noise come from
        generators of their own, so the question does not depend on how many demonstrations fit."""
        opts, names = self.opts, self.names
        asked = self.demo(query, gold)
        tail = opts["query_template"].replace("{input}", asked.text)
        stream = demonstrations(
            self.by_class, query, opts["sampler"], instance_rng(self.seed, NAME, "demos", index)
        )
        noise_rng = instance_rng(self.seed, NAME, "noise", index)
        fitted, shown = fit_with_noise(
            self.counter,
            self.length,
            self.counter.count(tail),
            (self.demo(i, label) for i, label in stream),
            self.render,
            ending_with(tail),
            self.shortage,
            rate=self.rate,
            rng=noise_rng,
            noisy=functools.partial(self.noisy, rng=noise_rng),
        )
        per_class = Counter(d.label for d, _ in shown if d.label is not None)
        meta = {
            "label_field": self.label_field,
            "input_field": self.input_field,
            "classes": [names[c] for c in self.classes],
            "query_id": self.records[query].get("id", query),
            "query_label": gold,
            "query_shortened_chars": asked.cut,
            "n_demonstrations": sum(per_class.values()),
            "demonstrations_per_class": {names[c]: per_class.get(c, 0) for c in self.classes},
            "shortened_demonstrations": sum(1 for d, _ in shown if d.cut),
            "max_demo_chars": opts["max_demo_chars"],
            "partial_demonstration": fitted.dropped_chars > 0,
            **length_meta(self.length, fitted),
            **noise.meta(self.rate, self.kind, [replaced for _, replaced in shown]),
        }
        if opts["symbol_labels"]:
            meta["symbols"] = {names[c]: c for c in self.classes}
        return Instance(
            task=NAME,
            index=index,
            prompt=fitted.prompt,
            prompt_ids=fitted.ids,
            answer=opts["target_delimiter"] + names[gold],
            scoring="choices",
            choices=[opts["target_delimiter"] + names[c] for c in self.classes],
            meta=meta,
        )


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    plan = FewshotPlan.create(records, counter, length, seed, opts)
    asked = islice(queries(plan.by_class, seed), n)
    return [plan.instance(index, gold, query) for index, (gold, query) in enumerate(asked)]


def score(lm, instances: list[Instance]) -> dict:
    return scoring.accuracy_metrics([scoring.judge(lm, inst) for inst in instances])


register(
    Family(
        name=NAME,
        description="predict a record's label, level, component or template from in-context demonstrations",
        options=OPTIONS,
        build=build,
        score=score,
    )
)
