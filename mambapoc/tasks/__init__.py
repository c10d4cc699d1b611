"""Task builders: turn a dataset and a tokenizer into scored prompts of exact token lengths.

    instances = build_instances("needle", records, tokenizer, length=8192, n=20, seed=0, depths="0,50,100")
    metrics = score("needle", lm, instances)

Each family lives in its own module and registers itself in FAMILIES; see docs/tasks.md.
"""

from __future__ import annotations

from typing import Any

from mambapoc.errors import UserError
from mambapoc.tasks import continuation, fewshot, needle, nlp_algorithmic  # noqa: F401 - they register
from mambapoc.tasks.base import (
    FAMILIES,
    DatasetTooSmall,
    Family,
    Instance,
    ScoringLM,
    TokenCounter,
    get_family,
    resolve_options,
)
from mambapoc.tasks.spec import TaskSpec, parse_length, parse_lengths, parse_task

__all__ = [
    "FAMILIES",
    "DatasetTooSmall",
    "Family",
    "Instance",
    "ScoringLM",
    "TaskSpec",
    "build_instances",
    "parse_length",
    "parse_lengths",
    "parse_task",
    "score",
]


def build_instances(
    task: str, records: list[dict], tokenizer, length: int, n: int, seed: int = 0, **options: Any
) -> list[Instance]:
    """`n` instances of `task` whose prompts hold between L - L // 100 and L = `length` tokens of
    `tokenizer`, the same ones for the same arguments. Options are the family's (FAMILIES[task].options);
    every family takes `noise_rate` and `noise_kind`."""
    family = get_family(task)
    opts = resolve_options(family, options)
    if n < 1:
        raise UserError(f"the number of instances must be at least 1, not {n}")
    return family.build(records, TokenCounter(tokenizer), parse_length(length), n, seed, opts)


def score(task: str, lm: ScoringLM, instances: list[Instance]) -> dict:
    """JSON-serialisable metrics of `lm` on `instances` built for `task` with `lm.tokenizer`."""
    if not instances:
        raise ValueError("no instances to score")
    return get_family(task).score(lm, instances)
