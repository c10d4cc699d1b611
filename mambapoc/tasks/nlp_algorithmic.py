"""nlp-algorithmic: generated few-shot tasks in the `example:{input}->{output}` format of the Mamba
in-context learning study, for pretrained checkpoints. Words come from the logs' own vocabulary, or
from a short built-in list when the logs have too few. Demonstrations never repeat the query's input,
so copying cannot answer it: the rule must be learned from the context."""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Family,
    Instance,
    TokenCounter,
    ending_with,
    fit_with_noise,
    instance_rng,
    length_meta,
    register,
    vocabulary,
)

NAME = "nlp-algorithmic"
SUBTASKS = {
    "list_first": "the first item of a comma-separated list of words",
    "list_last": "the last item of a comma-separated list of words",
    "next_letter": "the letter after a letter",
    "prev_letter": "the letter before a letter",
    "to_upper": "a lowercase word in uppercase",
    "to_lower": "an uppercase word in lowercase",
}
OPTIONS = {"subtasks": tuple(SUBTASKS), "list_length": 3, **noise.OPTIONS}
_MIN_WORDS = 20
_BUILTIN_WORDS = (
    "apple bridge candle dragon engine forest garden harbor island jacket kettle ladder magnet needle "
    "orange pencil quarry rocket saddle tunnel umbrella valley window yellow zipper anchor basket castle "
    "desert feather"
).split()
_SPACES = re.compile(r"\s+")
_MAX_LINE = 160


def example(subtask: str, rng, words: list[str], list_length: int) -> tuple[str, str]:
    """One (input, output) pair of a subtask."""
    if subtask in ("list_first", "list_last"):
        items = rng.sample(words, list_length)
        return ", ".join(items), items[0] if subtask == "list_first" else items[-1]
    if subtask == "next_letter":
        letter = rng.choice(string.ascii_lowercase[:-1])
        return letter, chr(ord(letter) + 1)
    if subtask == "prev_letter":
        letter = rng.choice(string.ascii_lowercase[1:])
        return letter, chr(ord(letter) - 1)
    word = rng.choice(words)
    return (word, word.upper()) if subtask == "to_upper" else (word.upper(), word)


def render(pair: tuple[str, str | None]) -> str:
    """A demonstration line; a pair with no output is a bare log line that noise put in its place."""
    return f"{pair[0]}\n" if pair[1] is None else f"example:{pair[0]}->{pair[1]}\n"


def demonstrations(
    subtask: str, query: str, rng: random.Random, words: list[str], list_length: int
) -> Iterator[tuple[str, str]]:
    """Examples of `subtask` without end, none with the query's input, so copying cannot answer it."""
    while True:
        pair = example(subtask, rng, words, list_length)
        if pair[0] != query:
            yield pair


@dataclass(frozen=True)
class AlgorithmicPlan:
    """What the instances of one build share: the subtasks, the words (and where they came from), the
    length and the noise."""

    records: list[dict]
    counter: TokenCounter
    length: int
    seed: int
    rate: float
    kind: str
    subtasks: tuple[str, ...]
    list_length: int
    words: list[str]
    source: str

    @classmethod
    def create(
        cls, records: list[dict], counter: TokenCounter, length: int, seed: int, opts: dict
    ) -> AlgorithmicPlan:
        """The plan for `opts`, checked once; the vocabulary falls back to built-in words when the logs
        have too few for lists of distinct items."""
        rate, kind = noise.check(opts, noise.KINDS)
        subtasks = opts["subtasks"]
        unknown = sorted(set(subtasks) - set(SUBTASKS))
        if not subtasks or unknown:
            raise UserError(
                f"subtasks: {', '.join(unknown) or 'none given'}; choose from {', '.join(SUBTASKS)}"
            )
        words = vocabulary(records)
        source = "logs" if len(words) >= _MIN_WORDS else "builtin"
        if source == "builtin":
            words = sorted(_BUILTIN_WORDS)
        if not 2 <= opts["list_length"] <= len(words):
            raise UserError(f"list_length must be between 2 and {len(words)}")
        return cls(records, counter, length, seed, rate, kind, subtasks, opts["list_length"], words, source)

    def log_line(self, rng: random.Random) -> str:
        """A record's text on one line and of bounded length, to stand in a demonstration's place; words
        when there are no records, so noise works on any dataset."""
        text = str(self.records[rng.randrange(len(self.records))].get("text") or "") if self.records else ""
        return _SPACES.sub(" ", text).strip()[:_MAX_LINE] or " ".join(rng.sample(self.words, 4))

    def noisy(self, pair: tuple[str, str | None], subtask: str, rng: random.Random) -> tuple[str, str | None]:
        """`pair` with noise of the build's kind; a flipped output is redrawn until it differs, so that
        every flipped demonstration really is wrong."""
        if self.kind == "irrelevant":
            return self.log_line(rng), None
        if self.kind == "corrupted":
            return noise.corrupt(pair[0], rng), pair[1]
        wrong = pair[1]
        while wrong == pair[1]:
            wrong = example(subtask, rng, self.words, self.list_length)[1]
        return pair[0], wrong

    def instance(self, index: int) -> Instance:
        """Instance `index`: subtasks take turns, and the query, demonstrations and noise each have their
        own generator, so the question does not depend on how many demonstrations fit."""
        subtask = self.subtasks[index % len(self.subtasks)]
        query_rng = instance_rng(self.seed, NAME, "query", index)
        query, gold = example(subtask, query_rng, self.words, self.list_length)
        tail = f"example:{query}->"
        demo_rng = instance_rng(self.seed, NAME, "demos", index)
        noise_rng = instance_rng(self.seed, NAME, "noise", index)
        fitted, shown = fit_with_noise(
            self.counter,
            self.length,
            self.counter.count(tail),
            demonstrations(subtask, query, demo_rng, self.words, self.list_length),
            render,
            ending_with(tail),
            lambda _: "demonstrations are generated without end",
            rate=self.rate,
            rng=noise_rng,
            noisy=functools.partial(self.noisy, subtask=subtask, rng=noise_rng),
        )
        replaced = [flag for _, flag in shown]
        meta = {
            "subtask": subtask,
            "vocabulary": self.source,
            "n_demonstrations": fitted.whole_units - (sum(replaced) if self.kind == "irrelevant" else 0),
            "partial_demonstration": fitted.dropped_chars > 0,
            **length_meta(self.length, fitted),
            **noise.meta(self.rate, self.kind, replaced),
        }
        return Instance(
            task=NAME,
            index=index,
            prompt=fitted.prompt,
            prompt_ids=fitted.ids,
            answer=gold,
            scoring="generate",
            meta=meta,
        )


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    plan = AlgorithmicPlan.create(records, counter, length, seed, opts)
    return [plan.instance(index) for index in range(n)]


def score(lm, instances: list[Instance]) -> dict:
    judged = [scoring.judge(lm, inst) for inst in instances]
    return {
        **scoring.accuracy_metrics(judged),
        "by_subtask": scoring.accuracy_by(judged, [inst.meta["subtask"] for inst in instances]),
    }


register(
    Family(
        name=NAME,
        description="generated rules (list first/last, next/previous letter, upper/lower case), in-context",
        options=OPTIONS,
        build=build,
        score=score,
    )
)
