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

import re
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Family,
    Instance,
    TokenCounter,
    fit_to_length,
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


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
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

    groups: dict[Relation, dict[str, str]] = {}
    if opts["fact_source"] != "synthetic":
        for rel, known in sorted(log_facts(records).items()):
            if len(known) >= distractors + 1 and len(set(known.values())) >= 2:
                groups[rel] = known
        if not groups and opts["fact_source"] == "logs":
            raise UserError(
                f"fact_source=logs: found no {distractors + 1} request ids with their status, nor "
                "identifiers with another name=value field on their line, each with one value; use "
                "fact_source=auto or synthetic"
            )
    source = "logs" if groups else "synthetic"
    words = vocabulary(records) if source == "synthetic" else []
    if source == "synthetic" and len(words) < _MIN_VOCABULARY:
        raise UserError(
            f"{NAME} with synthetic facts needs log text with at least {_MIN_VOCABULARY} distinct words of 4 "
            f"to 12 letters; the dataset has {len(words)}"
        )
    facts = sorted((rel, key) for rel, keys in groups.items() for key in keys)
    texts = [str(r.get("text") or "") for r in records]

    def pick(index: int) -> tuple[Relation, list[tuple[str, str]], list[str]]:
        """The relation, the target fact then its distractors as (key, value), and the value pool."""
        rng = instance_rng(seed, NAME, "facts", index)
        if source == "logs":
            rel, key = facts[rng.randrange(len(facts))]
            known = groups[rel]
            others = rng.sample(sorted(k for k in known if k != key), distractors)
            return rel, [(k, known[k]) for k in [key, *others]], sorted(set(known.values()))
        keys: list[str] = []
        while len(keys) < distractors + 1:
            a, b = rng.sample(words, 2)
            candidate = f"{a}-{b}-{rng.randrange(1000, 10000)}"
            if candidate not in keys:
                keys.append(candidate)
        return Relation("synthetic"), [(k, rng.choice(words)) for k in keys], words

    def shortage(needed: int) -> str:
        return (
            f"{NAME} at {length} tokens needs about {needed} log records for its haystack (records that "
            f"mention a fact's key are left out); the dataset has {len(records)} records. Use a shorter "
            "length or a larger dataset"
        )

    def one(index: int) -> Instance:
        depth = depths[index % len(depths)]
        rel, stated, pool = pick(index)
        rng = instance_rng(seed, NAME, "place", index)
        keys = [k for k, _ in stated]
        lines = [rel.line(k, v) + "\n" for k, v in stated]
        depth_of = [depth] + [rng.uniform(0, 100) for _ in stated[1:]]
        target_key, gold = stated[0]
        tail = f"\nQuestion: {rel.question(target_key)}\nAnswer: {rel.prefix(target_key)}"
        noise_rng = instance_rng(seed, NAME, "noise", index)
        flags: list[bool] = []

        def allowed(i: int) -> bool:
            return not any(k in texts[i] for k in keys)

        def noisy(text: str) -> str:
            if kind == "corrupted":
                return noise.corrupt(text, noise_rng)
            # Bounded so a dataset of nothing but key-bearing records cannot loop forever.
            for _ in range(100):
                j = noise_rng.randrange(len(records))
                if allowed(j):
                    return texts[j]
            return text

        def units():
            # The haystack runs backwards from a random record, as a window of the real log would,
            # wrapping once around the dataset.
            start = instance_rng(seed, NAME, "anchor", index).randrange(len(records))
            window = (i % len(records) for i in range(start, start - len(records), -1))
            hay = (texts[i] for i in window if allowed(i))
            for text, replaced in noise.mix(hay, rate, noise_rng, noisy):
                flags.append(replaced)
                yield text + "\n"

        def layout(hay: list[str], counts: list[int]) -> str:
            cum = [0]
            for c in counts:
                cum.append(cum[-1] + c)
            slots: dict[int, list[str]] = defaultdict(list)
            for line, d in zip(lines, depth_of, strict=True):
                want = d / 100 * cum[-1]
                j = bisect_left(cum, want)
                if j > 0 and (j == len(cum) or want - cum[j - 1] <= cum[j] - want):
                    j -= 1
                slots[j].append(line)
            parts = [HEAD]
            for j, unit in enumerate([*hay, ""]):
                parts += slots.get(j, [])
                parts.append(unit)
            return "".join(parts) + tail

        reserved = counter.count(HEAD) + counter.count(tail) + sum(counter.counts(lines))
        fitted = fit_to_length(counter, length, reserved, units(), layout, shortage, offsets=True)
        starts = [s for s, _ in fitted.offsets]
        needle_at = fitted.prompt.index(lines[0])
        first = bisect_left(starts, needle_at)
        hay_start = bisect_left(starts, len(HEAD))
        hay_end = bisect_left(starts, len(fitted.prompt) - len(tail))
        needle_tokens = bisect_left(starts, needle_at + len(lines[0])) - first
        span = max(hay_end - hay_start - needle_tokens, 1)
        choices = sorted({gold, *(v for _, v in stated)})
        extra = [v for v in pool if v not in choices]
        choices = sorted(
            choices + rng.sample(extra, max(0, min(len(extra), opts["num_choices"] - len(choices))))
        )
        meta = {
            "fact_source": source,
            "relation": rel.kind,
            "key": target_key,
            "needle": lines[0].rstrip("\n"),
            "distractors": [line.rstrip("\n") for line in lines[1:]],
            "depth_percent": depth,
            "depth_actual_percent": round(100 * (first - hay_start) / span, 2),
            "needle_token_index": first,
            "haystack_records": fitted.whole_units,
            **length_meta(length, fitted),
            **noise.meta(rate, kind, flags[: fitted.whole_units]),
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

    return [one(index) for index in range(n)]


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
