"""nlp-algorithmic: generated few-shot tasks in the `example:{input}->{output}` format of the Mamba
in-context learning study, for pretrained checkpoints. Words come from the logs' own vocabulary, or
from a short built-in list when the logs have too few. Demonstrations never repeat the query's input,
so copying cannot answer it: the rule must be learned from the context."""

from __future__ import annotations

import re
import string

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    Family,
    Instance,
    TokenCounter,
    fit_to_length,
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


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    rate, kind = noise.check(opts, noise.KINDS)
    subtasks = opts["subtasks"]
    unknown = sorted(set(subtasks) - set(SUBTASKS))
    if not subtasks or unknown:
        raise UserError(f"subtasks: {', '.join(unknown) or 'none given'}; choose from {', '.join(SUBTASKS)}")
    words = vocabulary(records)
    source = "logs" if len(words) >= _MIN_WORDS else "builtin"
    if source == "builtin":
        words = sorted(_BUILTIN_WORDS)
    if not 2 <= opts["list_length"] <= len(words):
        raise UserError(f"list_length must be between 2 and {len(words)}")

    def render(pair: tuple[str, str | None]) -> str:
        # An irrelevant unit is a bare log line in place of a demonstration.
        return f"{pair[0]}\n" if pair[1] is None else f"example:{pair[0]}->{pair[1]}\n"

    def log_line(rng) -> str:
        text = str(records[rng.randrange(len(records))].get("text") or "") if records else ""
        return _SPACES.sub(" ", text).strip()[:_MAX_LINE] or " ".join(rng.sample(words, 4))

    def one(index: int) -> Instance:
        subtask = subtasks[index % len(subtasks)]
        query, gold = example(subtask, instance_rng(seed, NAME, "query", index), words, opts["list_length"])
        tail = f"example:{query}->"
        demo_rng = instance_rng(seed, NAME, "demos", index)
        noise_rng = instance_rng(seed, NAME, "noise", index)
        flags: list[bool] = []

        def demos():
            while True:
                pair = example(subtask, demo_rng, words, opts["list_length"])
                if pair[0] != query:
                    yield pair

        def noisy(pair: tuple[str, str | None]) -> tuple[str, str | None]:
            if kind == "irrelevant":
                return log_line(noise_rng), None
            if kind == "corrupted":
                return noise.corrupt(pair[0], noise_rng), pair[1]
            wrong = pair[1]
            while wrong == pair[1]:
                wrong = example(subtask, noise_rng, words, opts["list_length"])[1]
            return pair[0], wrong

        def units():
            for unit, replaced in noise.mix(demos(), rate, noise_rng, noisy):
                flags.append(replaced)
                yield render(unit)

        fitted = fit_to_length(
            counter,
            length,
            counter.count(tail),
            units(),
            lambda u, _: "".join(u) + tail,
            lambda _: "demonstrations are generated without end",
        )
        replaced = flags[: fitted.whole_units]
        meta = {
            "subtask": subtask,
            "vocabulary": source,
            "n_demonstrations": fitted.whole_units - (sum(replaced) if kind == "irrelevant" else 0),
            "partial_demonstration": fitted.dropped_chars > 0,
            **length_meta(length, fitted),
            **noise.meta(rate, kind, replaced),
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

    return [one(index) for index in range(n)]


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
