"""continuation: per-token loss on held-out log text given the L tokens of log that precede it.

The prompt is the log just before a held-out piece (whole records, the farthest cut on its left); the
answer is the held-out piece itself: the records that follow, at least `target_bytes` of them. Held-out
positions are chosen from the seed alone, so models with different tokenizers are scored on the same
text wherever the dataset allows, and bits per byte compares them fairly.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from mambapoc.errors import UserError
from mambapoc.tasks import noise, scoring
from mambapoc.tasks.base import (
    DatasetTooSmall,
    Family,
    Instance,
    TokenCounter,
    ending_with,
    fit_with_noise,
    instance_rng,
    length_meta,
    register,
)

NAME = "continuation"
OPTIONS = {"target_bytes": 512, **noise.OPTIONS}


def held_out_end(lines: list[str], start: int, target_bytes: int) -> int | None:
    """The end of the held-out piece that starts at record `start`: whole records, so the piece is real
    log text, until it holds `target_bytes`; None when the log ends first."""
    end, size = start, 0
    while end < len(lines) and size < target_bytes:
        size += len(lines[end].encode("utf-8"))
        end += 1
    return end if size >= target_bytes else None


@dataclass(frozen=True)
class ContinuationPlan:
    """What the instances of one build share: the records as log lines, the length and the noise."""

    records: list[dict]
    lines: list[str]
    counter: TokenCounter
    length: int
    n: int
    seed: int
    rate: float
    kind: str

    def noisy(self, line: str, rng: random.Random) -> str:
        """A noisy line in place of `line`: corrupted, or another record's, which keeps the format of a
        log while it breaks the continuity the held-out text depends on."""
        if self.kind == "corrupted":
            return noise.corrupt(line, rng)
        return self.lines[rng.randrange(len(self.records))]

    def shortage(self, needed: int, start: int, end: int) -> str:
        """Counts the held-out records too, since they cannot serve as context."""
        return (
            f"{NAME} at {self.length} tokens needs about {needed + self.n + end - start} records: ~{needed} of "
            f"context before each of {self.n} held-out pieces; the dataset has {len(self.records)}. Use a "
            "shorter length or a larger dataset"
        )

    def instance(self, index: int, start: int, end: int) -> Instance:
        """Records `start` to `end` held out after the log that precedes them, nearest first. Noise is
        seeded by the position, not the index, so a held-out piece gets the same context whichever
        positions before it were skipped."""
        noise_rng = instance_rng(self.seed, NAME, "noise", start)
        fitted, shown = fit_with_noise(
            self.counter,
            self.length,
            0,
            (self.lines[i] for i in range(start - 1, -1, -1)),
            str,
            ending_with(""),
            functools.partial(self.shortage, start=start, end=end),
            rate=self.rate,
            rng=noise_rng,
            noisy=functools.partial(self.noisy, rng=noise_rng),
        )
        held_out = "".join(self.lines[start:end])
        meta = {
            "held_out_record_ids": [self.records[i].get("id", i) for i in range(start, end)],
            "held_out_bytes": len(held_out.encode("utf-8")),
            "context_records": fitted.whole_units,
            **length_meta(self.length, fitted),
            **noise.meta(self.rate, self.kind, [replaced for _, replaced in shown]),
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


def build(
    records: list[dict], counter: TokenCounter, length: int, n: int, seed: int, opts: dict
) -> list[Instance]:
    rate, kind = noise.check(opts, ("irrelevant", "corrupted"))
    if opts["target_bytes"] < 1:
        raise UserError("target_bytes must be at least 1")
    lines = [str(r.get("text") or "") + "\n" for r in records]
    plan = ContinuationPlan(records, lines, counter, length, n, seed, rate, kind)
    positions = list(range(1, len(records)))
    instance_rng(seed, NAME, "positions").shuffle(positions)
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
        end = held_out_end(lines, start, opts["target_bytes"])
        if end is None:
            continue
        try:
            instances.append(plan.instance(len(instances), start, end))
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
