"""fewshot-classify: predict a record's label from as many `input -> label` demonstrations as fit.

The prompt follows lm-eval's layout: each demonstration is `query_template` with the input, then
`target_delimiter` and the label, then `fewshot_delimiter`; the prompt ends with the query's
`query_template`, and each candidate continuation is `target_delimiter + label`. The context is the tail
of a long stream of demonstrations, so the farthest one may be cut on its left to reach the length.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Draw,
    Family,
    Instance,
    TokenCounter,
    fit_to_length,
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


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
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
    by_class = {c: indexed[c] for c in classes}
    usable = sum(len(v) for v in by_class.values())
    shown = symbol_names(classes, instance_rng(seed, NAME, "symbols")) if opts["symbol_labels"] else {}
    name = {c: shown.get(c, c) for c in classes}

    def inputs(i: int, field: str = input_field) -> tuple[str, int]:
        return shorten(str(records[i].get(field) or ""), opts["max_demo_chars"])

    def demo(text: str, label: str) -> str:
        return (
            opts["query_template"].replace("{input}", text)
            + opts["target_delimiter"]
            + name[label]
            + opts["fewshot_delimiter"]
        )

    query_order = classes[:]
    instance_rng(seed, NAME, "classes").shuffle(query_order)
    queries = {c: Draw(by_class[c], instance_rng(seed, NAME, "queries", c)) for c in classes}

    def shortage(needed: int) -> str:
        return (
            f"{NAME} at {length} tokens needs about {needed + 1} records labelled by {label_field} "
            f"(1 query + ~{needed} demonstrations); the dataset has {usable} in the {len(classes)} "
            f"classes used. Use a shorter length or a larger dataset"
        )

    def one(index: int) -> Instance:
        gold = query_order[index % len(classes)]
        if not len(queries[gold]):
            # More instances than records of this class: queries repeat, with other demonstrations.
            queries[gold] = Draw(by_class[gold], instance_rng(seed, NAME, "queries", gold, index))
        query = queries[gold].pop()
        query_text, query_cut = inputs(query)
        tail = opts["query_template"].replace("{input}", query_text)
        noise_rng = instance_rng(seed, NAME, "noise", index)
        used: list[dict] = []

        def noisy(unit: tuple[int, str | None]) -> tuple[int, str | None]:
            i, label = unit
            if kind == "irrelevant":
                return noise_rng.randrange(len(records)), None
            if kind == "flipped":
                return i, noise_rng.choice([c for c in classes if c != label])
            return unit

        def units():
            stream = _demonstrations(
                by_class, query, opts["sampler"], instance_rng(seed, NAME, "demos", index)
            )
            for (i, label), replaced in noise.mix(stream, rate, noise_rng, noisy):
                used.append({"label": label, "noise": replaced})
                if label is None:
                    # An irrelevant record is a bare log line, outside the demonstration format.
                    text, used[-1]["cut"] = inputs(i, "text")
                    yield text + opts["fewshot_delimiter"]
                    continue
                text, used[-1]["cut"] = inputs(i)
                if replaced and kind == "corrupted":
                    text = noise.corrupt(text, noise_rng)
                yield demo(text, label)

        fitted = fit_to_length(
            counter, length, counter.count(tail), units(), lambda u, _: "".join(u) + tail, shortage
        )
        shown_units = used[: fitted.whole_units]
        per_class = Counter(u["label"] for u in shown_units if u["label"] is not None)
        meta = {
            "label_field": label_field,
            "input_field": input_field,
            "classes": [name[c] for c in classes],
            "query_id": records[query].get("id", query),
            "query_label": gold,
            "query_shortened_chars": query_cut,
            "n_demonstrations": sum(per_class.values()),
            "demonstrations_per_class": {name[c]: per_class.get(c, 0) for c in classes},
            "shortened_demonstrations": sum(1 for u in shown_units if u["cut"]),
            "max_demo_chars": opts["max_demo_chars"],
            "partial_demonstration": fitted.dropped_chars > 0,
            **length_meta(length, fitted),
            **noise.meta(rate, kind, [u["noise"] for u in shown_units]),
        }
        if shown:
            meta["symbols"] = {name[c]: c for c in classes}
        return Instance(
            task=NAME,
            index=index,
            prompt=fitted.prompt,
            prompt_ids=fitted.ids,
            answer=opts["target_delimiter"] + name[gold],
            scoring="choices",
            choices=[opts["target_delimiter"] + name[c] for c in classes],
            meta=meta,
        )

    return [one(index) for index in range(n)]


def _demonstrations(by_class: dict[str, list[int]], query: int, sampler: str, rng):
    """(record, label) pairs without replacement, never the query. `balanced` visits the classes round
    robin in a fresh random order each round until every class runs out; `random` draws from all."""
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
