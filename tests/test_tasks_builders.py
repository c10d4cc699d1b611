"""The named pieces of the task builders, each alone: fitting with noise, needle placement and depth,
answer choices, the few-shot demonstration and query streams, held-out pieces and generated examples."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest
from test_tasks_support import make_records

from mambapoc.tasks import noise
from mambapoc.tasks.base import TokenCounter, ending_with, fit_with_noise
from mambapoc.tasks.continuation import held_out_end
from mambapoc.tasks.fewshot import OPTIONS as FEWSHOT_OPTIONS
from mambapoc.tasks.fewshot import Demo, FewshotPlan, demonstrations, queries
from mambapoc.tasks.needle import (
    HEAD,
    Facts,
    NeedlePlan,
    Placement,
    Relation,
    answer_choices,
    measured_depth,
    mentions_none,
)
from mambapoc.tasks.nlp_algorithmic import demonstrations as examples


class CharTokenizer:
    """One token per character: a text's count is its length and nothing merges across joins, so every
    fit is exact and expectations can be computed by hand."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False, verbose=False):
        if isinstance(text, list):
            return {"input_ids": [[ord(c) for c in t] for t in text]}
        out = {"input_ids": [ord(c) for c in text]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out


def chars() -> TokenCounter:
    return TokenCounter(CharTokenizer())


def never(unit):
    raise AssertionError("noisy must not be called at rate 0")


def shortage(needed: int) -> str:
    return f"need {needed}"


# fit_with_noise


def test_fit_with_noise_flags_exactly_the_replaced_whole_units():
    units = [f"u{i:03d}\n" for i in range(1000)]  # 5 characters each
    fitted, shown = fit_with_noise(
        chars(),
        1003,
        2,
        iter(units),
        str,
        ending_with("?\n"),
        shortage,
        rate=0.5,
        rng=random.Random(0),
        noisy=lambda u: "X" + u[1:],
    )
    assert len(fitted.ids) == 1003 and fitted.prompt.endswith("?\n")
    # 200 whole units and the last 1 of 5 characters of one more, which is not reported.
    assert fitted.whole_units == len(shown) == 200 and fitted.dropped_chars == 4
    for i, (unit, replaced) in enumerate(shown):
        assert unit[1:] == units[i][1:], "units come nearest to the question first"
        assert replaced == unit.startswith("X")
    # The prompt shows the units as returned (farthest first), replacements included.
    assert fitted.prompt[1:-2] == "".join(unit for unit, _ in reversed(shown))
    assert 0.4 < sum(r for _, r in shown) / len(shown) < 0.6


@pytest.mark.parametrize("rate", [0.1, 0.8])
def test_fit_with_noise_respects_the_rate(rate):
    units = (f"{i:04d}\n" for i in range(10_000))
    _, shown = fit_with_noise(
        chars(),
        20_000,
        0,
        units,
        str,
        ending_with(""),
        shortage,
        rate=rate,
        rng=random.Random(1),
        noisy=lambda u: u.upper(),
    )
    assert abs(sum(r for _, r in shown) / len(shown) - rate) < 0.03


def test_fit_with_noise_counts_the_replacement_not_the_original():
    fitted, shown = fit_with_noise(
        chars(),
        500,
        0,
        iter(["ab\n"] * 1000),
        str,
        ending_with(""),
        shortage,
        rate=0.5,
        rng=random.Random(2),
        noisy=lambda u: "longer replacement\n",
    )
    assert len(fitted.ids) == 500 and any(replaced for _, replaced in shown)
    assert fitted.prompt.endswith("".join(unit for unit, _ in reversed(shown)))


def test_fit_with_noise_at_rate_zero_never_replaces():
    fitted, shown = fit_with_noise(
        chars(),
        100,
        0,
        iter(["abcd\n"] * 100),
        str,
        ending_with(""),
        shortage,
        rate=0.0,
        rng=random.Random(0),
        noisy=never,
    )
    assert fitted.prompt == "abcd\n" * 20 and shown == [("abcd\n", False)] * 20


# needle: placement, measured depth, choices, facts, haystack


def placement(*depths: float) -> Placement:
    return Placement([f"fact {i}\n" for i in range(len(depths))], list(depths), "\nQ?")


@pytest.mark.parametrize("depth, slot", [(0, 0), (100, 10), (50, 5), (54, 5), (56, 6), (4, 0), (96, 10)])
def test_a_fact_goes_to_the_record_boundary_nearest_its_depth(depth, slot):
    assert placement(depth).slots([10] * 10) == {slot: ["fact 0\n"]}


def test_a_fact_halfway_between_two_boundaries_goes_to_the_earlier():
    assert placement(50).slots([10, 10, 10]) == {1: ["fact 0\n"]}


def test_depth_is_measured_in_tokens_not_records():
    # 50 % of 100 tokens is nearer the boundary after two tiny records (2) than after the big one (100).
    assert placement(50).slots([1, 1, 98]) == {2: ["fact 0\n"]}
    assert placement(50, 50, 100).slots([1, 1, 98]) == {2: ["fact 0\n", "fact 1\n"], 3: ["fact 2\n"]}


def test_layout_puts_the_needle_at_its_depth_between_records():
    hay = [f"record {i}\n" for i in range(10)]  # 9 characters each
    prompt = placement(30, 100).layout(hay, [len(u) for u in hay])
    assert prompt == HEAD + "".join(hay[:3]) + "fact 0\n" + "".join(hay[3:]) + "fact 1\n" + "\nQ?"


def test_measured_depth_on_hand_made_offsets():
    starts = list(range(40))  # one token per character
    # Haystack at characters 5..35 (30 tokens); a 5-token needle leaves a span of 25.
    assert measured_depth(starts, (15, 20), (5, 35)) == (15, 40.0)
    assert measured_depth(starts, (5, 10), (5, 35)) == (5, 0.0)
    assert measured_depth(starts, (30, 35), (5, 35)) == (30, 100.0)
    # Tokens of several characters: the needle starts at token 3 and takes tokens 3 and 4.
    starts = [0, 4, 8, 9, 12, 20, 21, 30, 33]
    assert measured_depth(starts, (9, 20), (4, 33)) == (3, round(100 * 2 / 5, 2))
    # A haystack of nothing but the needle is at depth 0, not a division by zero.
    assert measured_depth(starts, (4, 33), (4, 33)) == (1, 0.0)


def test_choices_hold_every_stated_value_and_fill_up_from_the_pool():
    choices = answer_choices(["503", "200", "503"], ["200", "201", "404", "500", "503"], 4, random.Random(0))
    assert choices == sorted(choices) and len(choices) == len(set(choices)) == 4
    assert {"200", "503"} <= set(choices) <= {"200", "201", "404", "500", "503"}
    # Never fewer than the stated values, never more than the pool has.
    assert answer_choices(["a", "b", "c"], ["a", "b", "c", "d"], 2, random.Random(0)) == ["a", "b", "c"]
    assert answer_choices(["a"], ["a", "b"], 5, random.Random(0)) == ["a", "b"]


def test_distractors_share_the_relation_and_never_the_key():
    rel = Relation("request-status")
    known = {f"req-{i}": str(500 + i % 3) for i in range(10)}
    facts = Facts("logs", {rel: known}, sorted((rel, k) for k in known), [])
    for seed in range(20):
        got, stated, pool = facts.pick(random.Random(seed), 3)
        keys = [k for k, _ in stated]
        assert got == rel and len(set(keys)) == 4 and all(known[k] == v for k, v in stated)
        assert pool == ["500", "501", "502"]
    synthetic = Facts("synthetic", {}, [], ["alpha", "bravo", "charlie", "delta"])
    rel, stated, pool = synthetic.pick(random.Random(0), 5)
    assert rel.kind == "synthetic" and len({k for k, _ in stated}) == 6 and pool == synthetic.words


@pytest.mark.parametrize("index", range(6))
def test_haystack_runs_backwards_once_around_without_key_bearing_records(index):
    texts = [f"line {chr(97 + i)}" for i in range(12)]
    keys = ["line c", "line h"]
    plan = NeedlePlan(
        [{}] * 12, texts, chars(), 256, 0, {}, 0.0, "irrelevant", Facts("synthetic", {}, [], [])
    )
    hay = list(plan.haystack(index, keys))
    assert sorted(hay) == sorted(t for t in texts if t not in keys)
    order = [texts.index(t) for t in hay]
    for a, b in zip(order, order[1:], strict=False):
        # One record back each step, or two over a record that mentions a key.
        assert (a - b) % 12 == 1 or ((a - b) % 12 == 2 and texts[(a - 1) % 12] in keys)
    assert mentions_none("line a", keys) and not mentions_none("see line h here", keys)


# fewshot: demonstrations, queries, noise


BY_CLASS = {"a": list(range(10)), "b": list(range(10, 20)), "c": list(range(20, 25))}


def test_balanced_demonstrations_take_turns_and_never_show_the_query():
    stream = list(demonstrations(BY_CLASS, 3, "balanced", random.Random(0)))
    assert sorted(i for i, _ in stream) == [i for i in range(25) if i != 3]
    assert all(i in BY_CLASS[c] for i, c in stream)
    # Every class has records for 5 rounds; each round shows each class once.
    for rounds in range(1, 6):
        assert Counter(c for _, c in stream[: 3 * rounds]) == {"a": rounds, "b": rounds, "c": rounds}
    # Then the two classes left take turns.
    assert Counter(c for _, c in stream[15:23]) == {"a": 4, "b": 4}


def test_random_demonstrations_never_show_the_query():
    for seed in range(5):
        stream = list(demonstrations(BY_CLASS, 22, "random", random.Random(seed)))
        assert sorted(i for i, _ in stream) == [i for i in range(25) if i != 22]
        assert all(i in BY_CLASS[c] for i, c in stream)


def test_queries_take_turns_by_class_and_repeat_only_once_a_class_is_used_up():
    asked = list(islice(queries(BY_CLASS, 0), 30))
    for start in range(0, 30, 3):
        assert sorted(c for c, _ in asked[start : start + 3]) == ["a", "b", "c"]
    of_c = [i for c, i in asked if c == "c"]
    assert sorted(of_c[:5]) == BY_CLASS["c"] and sorted(of_c[5:]) == BY_CLASS["c"]
    assert all(i in BY_CLASS[c] for c, i in asked)


def fewshot_plan(kind: str) -> FewshotPlan:
    opts = {**FEWSHOT_OPTIONS, "label_field": "level", "noise_rate": 0.5, "noise_kind": kind}
    return FewshotPlan.create(make_records(60), chars(), 1024, 0, opts)


def test_fewshot_noise_changes_what_its_kind_says():
    demo = Demo("slow query on table orders", "WARN", 0)
    rng = random.Random(0)
    flipped = [fewshot_plan("flipped").noisy(demo, rng) for _ in range(20)]
    assert all(d.label in ("ERROR", "INFO") and d.text == demo.text for d in flipped)
    corrupted = fewshot_plan("corrupted").noisy(demo, rng)
    assert corrupted.label == "WARN" and corrupted.text != demo.text and len(corrupted.text) == len(demo.text)
    plan = fewshot_plan("irrelevant")
    stray = plan.noisy(demo, rng)
    assert stray.label is None and any(stray.text == r["text"] for r in plan.records)
    assert plan.render(stray) == stray.text + "\n\n"
    assert plan.render(demo) == "slow query on table orders\nLabel: WARN\n\n"


def test_fewshot_demo_shows_the_input_field_shortened():
    plan = FewshotPlan.create(make_records(60), chars(), 1024, 0, {**FEWSHOT_OPTIONS, "max_demo_chars": 12})
    demo = plan.demo(0, "INFO")
    message = plan.records[0]["message"]
    assert demo.text.endswith(" …") and len(demo.text) <= 12 and message.startswith(demo.text[:-2])
    assert demo.cut == len(message) - len(demo.text[:-2])


# continuation and nlp-algorithmic


def test_held_out_piece_is_whole_records_up_to_the_target_bytes():
    lines = ["aaaa\n", "é\n", "bb\n", "cccc\n"]  # 5, 3, 3 and 5 bytes
    assert held_out_end(lines, 1, 3) == 2
    assert held_out_end(lines, 1, 4) == 3
    assert held_out_end(lines, 0, 16) == 4
    assert held_out_end(lines, 2, 9) is None


def test_generated_demonstrations_never_repeat_the_query_input():
    stream = list(islice(examples("next_letter", "c", random.Random(0), [], 3), 300))
    assert all(query != "c" and ord(answer) == ord(query) + 1 for query, answer in stream)
    assert len({query for query, _ in stream}) == 24


def test_noise_mix_flags_what_it_replaced():
    mixed = list(noise.mix(range(1000), 0.3, random.Random(0), lambda u: -u - 1))
    assert all(replaced == (unit < 0) for unit, replaced in mixed)
    assert 0.25 < sum(r for _, r in mixed) / 1000 < 0.35
