"""The typed result cell: one record, one key, one reader for results.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambapoc.results import SCHEMA, Cell, ResultStore, Timing, model_key, read_cells

FIXTURE = Path(__file__).parent / "data" / "run_fixture" / "results.jsonl"


def test_timing_percentiles_interpolate_between_order_statistics():
    t = Timing.of([4.0, 1.0, 3.0, 2.0])
    assert (t.min, t.max, t.n, t.mean) == (1.0, 4.0, 4, 2.5)
    assert t.p50 == pytest.approx(2.5) and t.p90 == pytest.approx(3.7)
    assert t.cv == pytest.approx(1.2909944 / 2.5)  # sample standard deviation over the mean
    assert Timing.of([7.0]).p90 == 7.0


def test_a_cell_round_trips_and_keeps_keys_it_does_not_know():
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    line["from_a_newer_version"] = {"x": 1}
    cell = Cell.from_json(line)
    assert isinstance(cell.prefill_s, Timing) and cell.prefill_s.n == 5
    assert cell.extra == {"from_a_newer_version": {"x": 1}} and cell.schema == 1
    again = cell.to_json()
    assert again["from_a_newer_version"] == {"x": 1} and again["prefill_s"] == {**line["prefill_s"], "cv": 0.0}
    assert Cell.from_json(again) == cell
    assert Cell(model="m", task="t", length_tokens=1, status="ok").schema == SCHEMA


def test_one_model_key_for_ids_and_models():
    ours = Cell(model="org/mamba", task="needle", task_key="needle[depths=0]", length_tokens=1024, status="ok")
    theirs = ours.replace(impl="hf", cross_check=True)
    assert ours.key == model_key("org/mamba") == "org/mamba"
    assert theirs.key == "org/mamba@hf" and theirs.cell_id == "org/mamba@hf|needle[depths=0]|1024"
    # Files written before the schema carried the flag spell it in the id only.
    old = {**ours.to_json(), "cell_id": theirs.cell_id}
    del old["cross_check"], old["schema"]
    assert Cell.from_json(old).key == "org/mamba@hf"


def test_the_engine_reads_its_own_measurements_strictly():
    with pytest.raises(ValueError, match="not fields of a cell: prefil_s"):
        Cell.from_json({"model": "m", "task": "t", "length_tokens": 1, "status": "ok", "prefil_s": 1}, strict=True)
    with pytest.raises(ValueError, match="lacks status"):
        Cell.from_json({"model": "m", "task": "t", "length_tokens": 1})


def test_the_reader_counts_bad_lines_and_the_last_write_of_a_cell_wins(tmp_path):
    first = Cell(model="m", task="needle", length_tokens=512, status="timeout")
    other = Cell(model="m", task="needle", length_tokens=1024, status="ok")
    store = ResultStore(tmp_path)
    store.append(first)
    store.append(other)
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('[1, 2]\n{"model": "m"}\nnot json\n')
    store.append(first.replace(status="ok"))
    found = read_cells(tmp_path)
    assert [(c.length_tokens, c.status) for c in found.cells] == [(512, "ok"), (1024, "ok")]
    assert found.unreadable == 3 and found.ids() == {"m|needle|512", "m|needle|1024"}
