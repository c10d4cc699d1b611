"""Scoring: intervals, bits per byte, multiple choice and generation, and end to end with a model that
can copy from its context (above chance) and one that cannot (at chance)."""

from __future__ import annotations

import json
import math

import pytest
from test_tasks_support import InductionLM, bpe, make_records, records
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mambapoc.tasks import Instance, build_instances, score
from mambapoc.tasks.scoring import (
    bits_per_byte,
    bootstrap_ci,
    continuation_ids,
    exact_match,
    judge,
    wilson_interval,
)


class UniformLM:
    """Every token equally likely: knows nothing."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.logp = -math.log(len(tokenizer))

    def continuation_logprobs(self, context_ids, continuations):
        return [[self.logp] * len(c) for c in continuations]

    def token_logprobs(self, ids):
        return [self.logp] * (len(ids) - 1)

    def greedy(self, context_ids, max_new_tokens):
        return [0] * max_new_tokens


class ScriptedLM(UniformLM):
    """Gives fixed total log-probabilities to the continuations, one token each."""

    def __init__(self, tokenizer, totals):
        super().__init__(tokenizer)
        self.totals = totals

    def continuation_logprobs(self, context_ids, continuations):
        return [[t] for t in self.totals]


def test_wilson_interval():
    assert wilson_interval(0, 0) == [0.0, 1.0]
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] > 0.65
    assert wilson_interval(0, 10)[0] == 0.0


def test_bits_per_byte_and_bootstrap():
    assert bits_per_byte(100 * math.log(2), 100) == pytest.approx(1.0)
    nll, size = [10.0, 20.0, 30.0, 40.0], [10, 10, 10, 10]
    stat = lambda a, b: a.sum() / b.sum()  # noqa: E731
    lo, hi = bootstrap_ci([nll, size], stat, seed=0)
    assert lo <= 2.5 <= hi
    assert bootstrap_ci([nll, size], stat, seed=0) == [lo, hi]


def test_multiple_choice_picks_the_likeliest_and_reports_its_probability():
    inst = Instance("t", 0, "x", [1, 2], " b", "choices", [" a", " b", " c"], {})
    verdict = judge(ScriptedLM(bpe(), [math.log(0.2), math.log(0.6), math.log(0.2)]), inst)
    assert (
        verdict.correct
        and verdict.confidence == pytest.approx(0.6)
        and verdict.chance == pytest.approx(1 / 3)
    )
    verdict = judge(ScriptedLM(bpe(), [math.log(0.5), math.log(0.25), math.log(0.25)]), inst)
    assert not verdict.correct and verdict.confidence == pytest.approx(0.5)


def test_continuations_are_tokenized_as_they_follow_the_prompt():
    """A SentencePiece-style tokenizer marks a word start with `▁`: alone, "retries" would get one."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>"], show_progress=False)
    tok.train_from_iterator([r["text"] for r in records()[:300]], trainer)
    lm = UniformLM(PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>"))
    full = lm.tokenizer.encode("example:x->retries", add_special_tokens=False)
    alone = lm.tokenizer.encode("retries", add_special_tokens=False)
    ids = continuation_ids(lm, "example:x->", "retries")
    assert ids == full[len(full) - len(ids) :] and ids != alone


def test_exact_match_reads_the_first_line():
    assert exact_match(" 502\nrequest req-1", " 502")
    assert not exact_match(" 5020", "502")
    assert not exact_match("", "502")


@pytest.fixture(scope="module")
def copier():
    return InductionLM(bpe())


def _json_clean(metrics: dict) -> dict:
    assert json.loads(json.dumps(metrics)) == metrics
    return metrics


def test_copying_model_beats_chance_on_fewshot(copier):
    instances = build_instances("fewshot-classify", records(), bpe(), 1024, n=12, seed=0)
    m = _json_clean(score("fewshot-classify", copier, instances))
    assert m["n"] == 12 and m["chance"] == pytest.approx(1 / 3)
    assert m["accuracy"] >= 0.75
    assert m["ci95"][0] <= m["accuracy"] <= m["ci95"][1]
    assert len(m["calibration"]) == 12 and all(0 <= c <= 1 and k in (0, 1) for c, k in m["calibration"])


def test_uniform_model_scores_chance():
    instances = build_instances("fewshot-classify", records(), bpe(), 1024, n=6, seed=0)
    m = score("fewshot-classify", UniformLM(bpe()), instances)
    assert m["accuracy"] == pytest.approx(m["chance"])


@pytest.mark.parametrize("mode", ["choices", "generate"])
def test_copying_model_finds_the_needle_at_every_depth(mode, copier):
    instances = build_instances(
        "needle", records(), bpe(), 1024, n=10, seed=0, answer_mode=mode, num_distractors=2
    )
    m = _json_clean(score("needle", copier, instances))
    assert set(m["by_depth"]) == {"0", "25", "50", "75", "100"}
    assert m["accuracy"] >= 0.8
    assert m["chance"] == (0.0 if mode == "generate" else pytest.approx(0.25))


def test_continuation_reports_bits_per_byte_and_loss_by_position(copier):
    recs = make_records(1500)
    instances = build_instances("continuation", recs, bpe(), 1024, n=3, seed=0)
    m = _json_clean(score("continuation", copier, instances))
    uniform = score("continuation", UniformLM(bpe()), instances)
    assert 0 < m["bits_per_byte"] < uniform["bits_per_byte"]
    assert m["ci95"][0] <= m["bits_per_byte"] <= m["ci95"][1]
    starts = [start for start, _ in m["loss_by_position"]]
    assert starts == [2**k for k in range(len(starts))] and starts[-1] == 1024
    # A model that copies gains from context: late positions cost less than early ones.
    assert m["loss_by_position"][-1][1] < m["loss_by_position"][2][1]


def test_nlp_algorithmic_scores_by_generation(copier):
    instances = build_instances("nlp-algorithmic", records(), bpe(), 1024, n=6, seed=0)
    m = _json_clean(score("nlp-algorithmic", copier, instances))
    assert m["n"] == 6 and m["chance"] == 0.0
    assert set(m["by_subtask"]) == {
        "list_first",
        "list_last",
        "next_letter",
        "prev_letter",
        "to_upper",
        "to_lower",
    }
