"""Training sequences: plain language modelling on log text mixed with in-context episodes.

Episodes come from the same task builders that evaluation uses (few-shot classification, most of them
with arbitrary symbol labels; needle retrieval) and from copying, all at the training length. A model
learns in context only if its training rewards reading the context: symbol labels cannot be guessed
from prior knowledge, a needle's answer occurs once, and a copy's second half is predictable only from
its first.

Every sequence is a pure function of (seed, step, row), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

import torch

from mambapoc.errors import UserError
from mambapoc.tasks.fewshot import OPTIONS as FEWSHOT

IGNORE = -100
# A demonstration's label in the few-shot builder's default layout (`...\nLabel: NAME\n\n`), taken from
# the builder itself so that the two cannot drift apart.
_DEMO_LABEL = re.compile(
    re.escape(FEWSHOT["query_template"].split("{input}")[1] + FEWSHOT["target_delimiter"]) + r"([^\n]+)"
    + re.escape(FEWSHOT["fewshot_delimiter"])
)
LABEL_FIELDS = ("label", "level", "component", "template_id")


def split_records(records: list[dict], holdout_fraction: float) -> tuple[list[dict], list[dict]]:
    """Per source, the first records train and the last `holdout_fraction` are held out, so held-out
    episodes come from later log lines than anything trained on (as a deployment would meet them)."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_source[r["source"]].append(r)
    train, held = [], []
    for recs in by_source.values():
        cut = len(recs) - int(round(len(recs) * holdout_fraction))
        train += recs[:cut]
        held += recs[cut:]
    if not train or not held:
        raise UserError("the training data is too small to hold out evaluation records")
    return train, held


class SequenceMaker:
    def __init__(self, records: list[dict], tokenizer, seq_len: int, mixture: dict[str, float],
                 answer_weight: float, seed: int):
        self.records = records
        self.tok = tokenizer
        self.seq_len = seq_len
        self.kinds = [k for k, w in mixture.items() if w > 0]
        self.weights = [mixture[k] for k in self.kinds]
        self.answer_weight = answer_weight
        self.seed = seed
        self.eos = tokenizer.eos_token_id
        # The fields the few-shot builder can actually use on these records, asked of the builder itself.
        self.label_fields = [f for f in LABEL_FIELDS if self._builds("fewshot-classify", label_field=f)]
        text = "\n".join(r["text"] for r in records)
        self.stream = tokenizer.encode(text, add_special_tokens=False)
        if len(self.stream) < 2 * seq_len:
            raise UserError(f"training text has {len(self.stream)} tokens; at least {2 * seq_len} are needed")

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [self.sequence(step, i) for i in range(batch_size)]
        ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
        labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
        weights = torch.tensor([r[2] for r in rows], dtype=torch.float32)
        return ids, labels, weights

    def sequence(self, step: int, row: int) -> tuple[list[int], list[int], list[float]]:
        rng = random.Random(f"{self.seed}:{step}:{row}")
        kind = rng.choices(self.kinds, self.weights)[0]
        if kind == "fewshot" and not self.label_fields:
            raise UserError("few-shot episodes need records with a label, level, component or template")
        if kind == "lm":
            ids = self._window(rng, self.seq_len + 1)
            return ids[:-1], ids[1:], [1.0] * self.seq_len
        if kind == "copy":
            half = self.seq_len // 2
            first = self._window(rng, half)
            ids = (first + [self.eos] + first)[: self.seq_len + 1]
            weights = [1.0] * half + [self.answer_weight] * (len(ids) - 1 - half)
            return ids[:-1], ids[1:], weights
        return self._episode(kind, rng)

    def _builds(self, task: str, **options) -> bool:
        from mambapoc.tasks import build_instances

        try:
            build_instances(task, self.records, self.tok, self.seq_len - 24, n=1, seed=0, **options)
        except UserError:
            return False
        return True

    def _window(self, rng: random.Random, n: int) -> list[int]:
        start = rng.randrange(len(self.stream) - n)
        return self.stream[start : start + n]

    def _episode(self, kind: str, rng: random.Random) -> tuple[list[int], list[int], list[float]]:
        from mambapoc.tasks import build_instances

        options: dict = {}
        if kind == "fewshot":
            task = "fewshot-classify"
            # Varying what is predicted (ticket category, level, component, event type) teaches reading the
            # demonstrations rather than one mapping. Fewer classes and shorter demonstrations put more
            # examples of each class in context, an easier start for the same skill. Real label names are
            # learnt from the weights alone, so most episodes use symbols, which only the context explains.
            field = rng.choice(self.label_fields)
            options = {"symbol_labels": rng.random() < 0.75, "label_field": field,
                       "max_classes": rng.randint(2, 8), "max_demo_chars": rng.choice((80, 140, 200))}
            stage = rng.random()
            if stage < 0.25:
                # The input is the label's own value (`ERROR -> velu`): binding names to symbols by literal
                # match, in dozens of short demonstrations per episode, is the simplest form of the skill.
                options.update(input_field=field, symbol_labels=True)
            elif stage < 0.4 and field in ("level", "component"):
                # The whole line spells the level or component out among everything else: a literal match
                # inside a long input, between the bare binding and matching by meaning.
                options["input_field"] = "text"
        else:
            task = "needle"
        # Room for the answer and the end-of-text token after the prompt.
        inst = build_instances(task, self.records, self.tok, self.seq_len - 24, n=1,
                               seed=rng.randrange(1 << 30), **options)[0]
        answer = self.tok.encode(inst.answer if inst.scoring == "choices" else " " + inst.answer.strip(),
                                 add_special_tokens=False)
        ids = (inst.prompt_ids + answer + [self.eos])[: self.seq_len + 1]
        n_prompt = len(inst.prompt_ids)
        labels = ids[1:] + [IGNORE] * (self.seq_len + 1 - len(ids))
        weights = [1.0 if i + 1 < n_prompt else self.answer_weight for i in range(len(ids) - 1)]
        if kind == "fewshot":
            for j in self._repeated_label_tokens(inst):
                weights[j - 1] = self.answer_weight
        weights += [0.0] * (self.seq_len - len(weights))
        ids = ids[:-1] + [self.eos] * (self.seq_len + 1 - len(ids))
        return ids, labels, weights

    def _repeated_label_tokens(self, inst) -> list[int]:
        """Positions of the label tokens of every demonstration whose label was already shown earlier in
        the prompt: each is a query answerable from the context, so an episode teaches from all of them,
        not from its final question alone."""
        enc = self.tok(inst.prompt, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        if list(enc["input_ids"]) != inst.prompt_ids:
            return []
        names = set(inst.meta["classes"])
        spans, seen = [], set()
        for m in _DEMO_LABEL.finditer(inst.prompt):
            if m.group(1) in names:
                if m.group(1) in seen:
                    spans.append(m.span(1))
                seen.add(m.group(1))
        out, k = [], 0
        for j, (start, end) in enumerate(enc["offset_mapping"]):
            while k < len(spans) and spans[k][1] <= start:
                k += 1
            if j > 0 and k < len(spans) and end > spans[k][0] and start < spans[k][1]:
                out.append(j)
        return out
