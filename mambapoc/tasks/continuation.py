"""continuation: per-token loss on held-out log text given the L tokens of log that precede it.

The prompt is the log just before a held-out piece (whole records, the farthest cut on its left); the
answer is the held-out piece itself: the records that follow, at least `target_bytes` of them. Held-out
positions are chosen from the seed alone, so models with different tokenizers are scored on the same
text wherever the dataset allows, and bits per byte compares them fairly.
"""

from __future__ import annotations

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    DatasetTooSmall,
    Family,
    Instance,
    TokenCounter,
    fit_to_length,
    instance_rng,
    length_meta,
    register,
)

NAME = "continuation"
OPTIONS = {"target_bytes": 512, **noise.OPTIONS}


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    rate, kind = noise.check(opts, ("irrelevant", "corrupted"))
    if opts["target_bytes"] < 1:
        raise UserError("target_bytes must be at least 1")
    lines = [str(r.get("text") or "") + "\n" for r in records]
    positions = list(range(1, len(records)))
    instance_rng(seed, NAME, "positions").shuffle(positions)

    def one(index: int, start: int, end: int) -> Instance:
        noise_rng = instance_rng(seed, NAME, "noise", start)
        flags: list[bool] = []

        def noisy(line: str) -> str:
            if kind == "corrupted":
                return noise.corrupt(line, noise_rng)
            return lines[noise_rng.randrange(len(records))]

        def units():
            for line, replaced in noise.mix(
                (lines[i] for i in range(start - 1, -1, -1)), rate, noise_rng, noisy
            ):
                flags.append(replaced)
                yield line

        def shortage(needed: int) -> str:
            return (
                f"{NAME} at {length} tokens needs about {needed + n + end - start} records: ~{needed} of "
                f"context before each of {n} held-out pieces; the dataset has {len(records)}. Use a shorter "
                "length or a larger dataset"
            )

        fitted = fit_to_length(counter, length, 0, units(), lambda u, _: "".join(u), shortage)
        held_out = "".join(lines[start:end])
        meta = {
            "held_out_record_ids": [records[i].get("id", i) for i in range(start, end)],
            "held_out_bytes": len(held_out.encode("utf-8")),
            "context_records": fitted.whole_units,
            **length_meta(length, fitted),
            **noise.meta(rate, kind, flags[: fitted.whole_units]),
        }
        return Instance(
            task=NAME,
            index=index,
            prompt=fitted.prompt,
            prompt_ids=fitted.ids,
            answer=held_out,
            scoring="loss",
            meta=meta,
        )

    too_small = DatasetTooSmall(
        f"{NAME} at {length} tokens needs {n} held-out pieces of {opts['target_bytes']} bytes with log "
        f"before each; the dataset has {len(records)} records"
    )
    # Less log precedes an earlier record, so once a position lacks context every earlier one does too
    # (up to noise), and is skipped without trying.
    short_below = 0
    instances: list[Instance] = []
    for start in positions:
        if len(instances) == n:
            break
        if start <= short_below:
            continue
        end, size = start, 0
        while end < len(records) and size < opts["target_bytes"]:
            size += len(lines[end].encode("utf-8"))
            end += 1
        if size < opts["target_bytes"]:
            continue
        try:
            instances.append(one(len(instances), start, end))
        except DatasetTooSmall as e:
            short_below, too_small = start, e
    if len(instances) < n:
        raise too_small
    return instances


register(
    Family(
        name=NAME,
        description="bits per byte of held-out log text after L tokens of log, and loss by context position",
        options=OPTIONS,
        build=build,
        score=scoring.continuation_metrics,
    )
)
