"""Task builders: exact lengths, determinism, needle placement, symbol labels, noise, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_tasks_support import bpe, make_records, records, words

from mambapoc.errors import UserError
from mambapoc.tasks import FAMILIES, DatasetTooSmall, Instance, build_instances, parse_length, parse_lengths
from mambapoc.tasks.noise import boundary_lengths

LABELS = ("INFO", "WARN", "ERROR")


@pytest.fixture(params=["bpe", "words"])
def tokenizer(request):
    return {"bpe": bpe, "words": words}[request.param]()


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("1k", 1024),
        ("8k", 8192),
        ("64K", 65536),
        (" 2048 ", 2048),
        (4096, 4096),
        ("1.5k", 1536),
        ("1m", 1 << 20),
    ],
)
def test_parse_length(text, tokens):
    assert parse_length(text) == tokens


@pytest.mark.parametrize("text", ["", "abc", "k", "0", "-1k", "1.3", "8 kb", True])
def test_parse_length_rejects_garbage(text):
    with pytest.raises(UserError):
        parse_length(text)


def test_parse_lengths():
    assert parse_lengths("1k,8k,64k") == [1024, 8192, 65536]
    assert parse_lengths(["1k", 512]) == [1024, 512]
    with pytest.raises(UserError):
        parse_lengths(" , ")


@pytest.mark.parametrize("task", sorted(FAMILIES))
@pytest.mark.parametrize("length", [1024, 3000])
def test_prompts_fit_exactly_with_each_tokenizer(task, length, tokenizer):
    for inst in build_instances(task, records(), tokenizer, length, n=3, seed=1):
        assert length - length // 100 <= len(inst.prompt_ids) <= length
        assert tokenizer.encode(inst.prompt, add_special_tokens=False) == inst.prompt_ids
        assert inst.meta["length_tokens"] == len(inst.prompt_ids)
        assert inst.meta["length_target"] == length


def test_two_tokenizers_give_different_token_streams():
    a = build_instances("needle", records(), bpe(), 1024, n=1, seed=0)[0]
    b = build_instances("needle", records(), words(), 1024, n=1, seed=0)[0]
    assert a.prompt_ids != b.prompt_ids
    assert a.meta["key"] == b.meta["key"]


@pytest.mark.parametrize("task", sorted(FAMILIES))
def test_same_seed_gives_byte_identical_instances(task):
    first = [i.to_json() for i in build_instances(task, records(), bpe(), 1024, n=4, seed=7, noise_rate=0.2)]
    again = [i.to_json() for i in build_instances(task, records(), bpe(), 1024, n=4, seed=7, noise_rate=0.2)]
    other = [i.to_json() for i in build_instances(task, records(), bpe(), 1024, n=4, seed=8, noise_rate=0.2)]
    assert first == again
    assert first != other


_CHILD = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from test_tasks_support import bpe_tokenizer, make_records
from mambapoc.tasks import FAMILIES, build_instances
recs = make_records()
tok = bpe_tokenizer(recs)
blob = "".join(i.to_json() for t in sorted(FAMILIES) for i in build_instances(t, recs, tok, 1024, 2, 3))
print(hashlib.sha256(blob.encode()).hexdigest())
"""


def test_instances_do_not_depend_on_the_process():
    """String hashing is randomised per process; nothing may depend on it."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_instance_round_trips_through_json():
    inst = build_instances("fewshot-classify", records(), bpe(), 1024, n=1, seed=0)[0]
    assert Instance.from_dict(json.loads(inst.to_json())) == inst


@pytest.mark.parametrize("distractors", [0, 3])
def test_needle_present_once_at_its_depth(distractors):
    depths = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 100.0)
    instances = build_instances(
        "needle", records(), bpe(), 2048, n=len(depths), seed=2, depths=depths, num_distractors=distractors
    )
    for inst, depth in zip(instances, depths, strict=True):
        meta = inst.meta
        assert meta["fact_source"] == "logs"
        assert inst.prompt.count(meta["needle"]) == 1
        context = inst.prompt[: inst.prompt.index("\nQuestion: ")]
        assert context.count(meta["key"]) == 1, "the key must occur only in its fact line"
        assert len(meta["distractors"]) == distractors
        for line in meta["distractors"]:
            assert context.count(line) == 1
        # The needle goes to the record boundary nearest to the depth: within one record's share.
        one_record = 100 / meta["haystack_records"]
        assert abs(meta["depth_actual_percent"] - depth) <= 2 * one_record
        assert inst.answer in inst.choices
        assert meta["needle"].endswith(inst.answer.strip())


def test_needle_falls_back_to_synthetic_facts():
    plain = [r for r in make_records(800) if "req-" not in r["message"]]
    inst = build_instances("needle", plain, bpe(), 1024, n=2, seed=0)
    for i in inst:
        assert i.meta["fact_source"] == "synthetic"
        assert i.prompt.count(i.meta["needle"]) == 1
        assert i.answer.strip() in i.meta["needle"]
    with pytest.raises(UserError, match="fact_source=logs"):
        build_instances("needle", plain, bpe(), 1024, n=1, seed=0, fact_source="logs")


def test_symbol_labels_hide_every_label_name():
    for inst in build_instances("fewshot-classify", records(), bpe(), 2048, n=6, seed=0, symbol_labels=True):
        for label in LABELS:
            assert label not in inst.prompt
            assert all(label.lower() not in c.lower() for c in inst.choices)
        assert sorted(inst.meta["symbols"].values()) == sorted(LABELS)
        assert inst.meta["symbols"][inst.answer.strip()] == inst.meta["query_label"]


def test_fewshot_is_balanced_and_records_what_it_used():
    instances = build_instances("fewshot-classify", records(), bpe(), 2048, n=6, seed=0)
    assert sorted(i.meta["query_label"] for i in instances) == sorted(LABELS * 2)
    for inst in instances:
        per_class = inst.meta["demonstrations_per_class"]
        assert max(per_class.values()) - min(per_class.values()) <= 1
        assert inst.meta["n_demonstrations"] == sum(per_class.values())
        # The farthest demonstration may be cut on its left, label and all.
        whole = inst.prompt.count("\nLabel: ")
        assert whole - inst.meta["partial_demonstration"] <= inst.meta["n_demonstrations"] <= whole
        assert inst.answer in inst.choices and len(inst.choices) == 3
        assert inst.prompt.endswith("\nLabel:")


def test_fewshot_shortens_long_demonstrations():
    inst = build_instances("fewshot-classify", records(), bpe(), 1024, n=1, seed=0, max_demo_chars=20)[0]
    assert inst.meta["shortened_demonstrations"] > 0
    assert " …\nLabel:" in inst.prompt


@pytest.mark.parametrize(
    "task, kind",
    [
        ("fewshot-classify", "flipped"),
        ("needle", "corrupted"),
        ("continuation", "irrelevant"),
        ("nlp-algorithmic", "corrupted"),
    ],
)
def test_noise_is_mixed_in_and_recorded(task, kind):
    for inst in build_instances(task, records(), bpe(), 2048, n=2, seed=0, noise_rate=0.5, noise_kind=kind):
        assert inst.meta["noise_kind"] == kind
        assert 0.2 < inst.meta["noise_rate_actual"] < 0.8
        assert 2048 - 20 <= len(inst.prompt_ids) <= 2048


def test_boundary_lengths_straddle_the_training_length():
    assert boundary_lengths(2048) == [1024, 2048, 4096, 8192]


def test_noise_options_are_checked():
    with pytest.raises(UserError, match="noise_kind"):
        build_instances("needle", records(), bpe(), 1024, n=1, seed=0, noise_rate=0.1, noise_kind="flipped")
    with pytest.raises(UserError, match="noise_rate"):
        build_instances("continuation", records(), bpe(), 1024, n=1, seed=0, noise_rate=1.0)


@pytest.mark.parametrize("task", ["fewshot-classify", "needle", "continuation"])
def test_small_dataset_says_how_many_records_are_needed(task):
    few = make_records(60)
    with pytest.raises(DatasetTooSmall, match=r"needs about \d+ .*the dataset has 60"):
        build_instances(task, few, bpe(), 8192, n=2, seed=0)


def test_length_below_the_fixed_part_is_a_user_error():
    with pytest.raises(UserError, match="too short"):
        build_instances("needle", records(), bpe(), 16, n=1, seed=0)


def test_options_accept_command_line_strings():
    inst = build_instances("needle", records(), bpe(), 1024, n=2, seed=0, depths="0,100", num_distractors="1")
    assert [i.meta["depth_percent"] for i in inst] == [0.0, 100.0]
    assert (
        build_instances("needle", records(), bpe(), 1024, n=1, seed=0, depths=50)[0].meta["depth_percent"]
        == 50.0
    )
    with pytest.raises(UserError, match="no option"):
        build_instances("needle", records(), bpe(), 1024, n=1, seed=0, depth="50")
    with pytest.raises(UserError, match="unknown task"):
        build_instances("summarise", records(), bpe(), 1024, n=1, seed=0)
    with pytest.raises(UserError, match="true or false"):
        build_instances("fewshot-classify", records(), bpe(), 1024, n=1, seed=0, symbol_labels="maybe")


def test_continuation_holds_out_the_same_text_for_both_tokenizers():
    recs = make_records(1500)
    a = build_instances("continuation", recs, bpe(), 1024, n=4, seed=0)
    b = build_instances("continuation", recs, words(), 1024, n=4, seed=0)
    assert [i.answer for i in a] == [i.answer for i in b]
    for inst in a:
        first = inst.meta["held_out_record_ids"][0]
        assert inst.prompt.endswith(recs[first - 1]["text"] + "\n")
        assert len(inst.answer.encode()) >= 512


def test_nlp_algorithmic_rules_and_format():
    for inst in build_instances("nlp-algorithmic", records(), bpe(), 1024, n=6, seed=0):
        lines = inst.prompt.split("\n")
        query = lines[-1].removeprefix("example:").removesuffix("->")
        demos = [line.removeprefix("example:").split("->") for line in lines[1:-1]]
        assert all(inp != query for inp, _ in demos), "no demonstration repeats the query"
        rule = {
            "list_first": lambda s: s.split(", ")[0],
            "list_last": lambda s: s.split(", ")[-1],
            "next_letter": lambda s: chr(ord(s) + 1),
            "prev_letter": lambda s: chr(ord(s) - 1),
            "to_upper": str.upper,
            "to_lower": str.lower,
        }[inst.meta["subtask"]]
        assert inst.answer == rule(query)
        assert all(out == rule(inp) for inp, out in demos)


def test_per_dataset_caches_by_the_record_list_itself():
    from mambapoc.tasks.base import per_dataset

    calls = []

    @per_dataset
    def having(records, field):
        calls.append(field)
        return sum(1 for r in records if field in r)

    recs = [{"a": 1}, {"b": 2}]
    assert having(recs, "a") == having(recs, "a") == 1
    assert calls == ["a"]
    assert having(recs, "b") == 1 and calls == ["a", "b"]
    # An equal list is another dataset; a list that grew is recomputed.
    assert having(list(recs), "a") == 1 and len(calls) == 3
    recs.append({"a": 3})
    assert having(recs, "a") == 2
