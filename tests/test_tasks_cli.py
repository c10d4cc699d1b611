"""`mambapoc tasks list` and `mambapoc tasks preview`, with the dataset and the tokenizer stubbed."""

from __future__ import annotations

import json

import pytest
from test_tasks_support import bpe, make_records, records

from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.tasks import FAMILIES


@pytest.fixture
def stubbed(monkeypatch):
    datasets = {"logs": records(), "tiny": make_records(40)}

    def resolve(name, data_dir=None):
        if name not in datasets:
            raise UserError(f"dataset {name!r} not found")
        return name

    monkeypatch.setattr("mambapoc.ingest.dataset.resolve_dataset", resolve)
    monkeypatch.setattr("mambapoc.ingest.dataset.load_records", lambda ds: datasets[ds])
    monkeypatch.setattr("mambapoc.models.registry.load_tokenizer", lambda spec: bpe())


def _run(argv) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_list_shows_every_family(capsys):
    assert _run(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in FAMILIES:
        assert f"{name}: " in out
    assert "symbol_labels=False" in out


def test_preview_writes_prompts_with_answers(stubbed, tmp_path, capsys):
    out = tmp_path / "needle.txt"
    argv = ["tasks", "preview", "-d", "logs", "-t", "needle", "-l", "1k", "-m", "bundled:x", "-n", "2"]
    assert _run([*argv, "-o", "depths=50", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("-- prompt --") == 2 and text.count("-- answer --") == 2
    assert "Question: " in text and '"depth_percent": 50.0' in text
    assert "1024 tokens" in capsys.readouterr().out

    jsonl = tmp_path / "needle.jsonl"
    assert _run([*argv, "--out", str(jsonl)]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert bpe().encode(row["prompt"], add_special_tokens=False) == row["prompt_ids"]
        assert 1014 <= len(row["prompt_ids"]) <= 1024


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-d", "tiny", "-t", "fewshot-classify", "-l", "8k"], "needs about"),
        (["-d", "logs", "-t", "needle", "-l", "8kb"], "not a token count"),
        (["-d", "logs", "-t", "needle", "-o", "depths"], "KEY=VALUE"),
        (["-d", "nope", "-t", "needle"], "not found"),
    ],
)
def test_preview_problems_are_one_line_errors(stubbed, tmp_path, capsys, extra, message):
    assert _run(["tasks", "preview", "-m", "bundled:x", "--out", str(tmp_path / "p.txt"), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
