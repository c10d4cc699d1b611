"""Cells spread over several devices: none lost or measured twice, each on the device it names, workers
pinned to their own cores; and the report keeps devices of different kinds apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mambapoc.bench.devices import Pool, Slot, slots
from mambapoc.bench.plan import Planned
from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.results import read_cells
from mambapoc.tasks.spec import TaskSpec

FAST = ["--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "1", "--new-tokens", "2",
        "--price-per-hour", "1.0"]
TWO_CORES = len(os.sched_getaffinity(0)) >= 2


FIXTURE = Path(__file__).parent / "data" / "run_fixture"


def _compare(tiny_models, tiny_dataset, out, *extra):
    data_dir, name = tiny_dataset
    main(["compare", "--dataset", name, "--data-dir", str(data_dir), "--models",
          f"{tiny_models['mamba']},{tiny_models['llama']}", "--lengths", "64,128,256",
          "--tasks", "continuation", "--out", str(out), *FAST, *extra])
    return read_cells(out).cells


@pytest.mark.skipif(not TWO_CORES, reason="two CPU devices need two cores")
def test_two_cpu_devices_run_every_cell_once(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cells = _compare(tiny_models, tiny_dataset, out, "--devices", "cpu:0,cpu:1")
    ids = [c.cell_id for c in cells]
    assert len(ids) == len(set(ids)) == 2 * 3
    assert all(c.ok for c in cells), [c.error for c in cells if not c.ok]
    assert {c.device for c in cells} <= {"cpu:0", "cpu:1"} and len({c.device for c in cells}) == 2
    assert {c.torch_threads for c in cells} == {len(os.sched_getaffinity(0)) // 2}  # pinned to its share
    # Resuming with one device runs nothing again.
    again = _compare(tiny_models, tiny_dataset, out, "--resume")
    assert sorted(c.cell_id for c in again) == sorted(ids)
    main(["report", str(out), "--format", "html", "--out", str(tmp_path / "report")])
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Devices the cells ran on" in html and "cpu:0 (" in html and "cpu:1 (" in html


def test_cells_of_unlike_devices_are_never_pooled(tmp_path):
    """A run resumed on other hardware: the report shows each model once per device type."""
    from mambapoc.report.combine import load
    from mambapoc.results import ResultStore

    base = read_cells(FIXTURE).cells
    store = ResultStore(tmp_path)
    for i, cell in enumerate(base):
        store.append(cell.replace(device_name="NVIDIA H200", device="cuda:0") if i % 2 else cell)
    for f in ("config.yaml", "env.json", "models.json", "dataset.yaml"):
        (tmp_path / f).write_bytes((FIXTURE / f).read_bytes())
    run = load([tmp_path])
    kinds = {m.name.rsplit("(", 1)[-1].rstrip(")") for m in run.models}
    assert "NVIDIA H200" in kinds and len(kinds) == 2
    assert len(run.models) == 2 * len({c.key for c in base})
    for m in run.models:  # every model's cells come from one device type
        assert len({c.device_name for c in run.cells if c.key == m.key}) == 1


def test_the_pool_keeps_models_on_their_devices_and_leaves_no_device_idle():
    cells = [Planned(m, "ours", False, TaskSpec("continuation"), n) for m in ("a", "b") for n in (1, 2, 3)]
    pool = Pool(cells)
    assert pool.take("cuda:0").model == "a"
    assert pool.take("cuda:1").model == "b"  # a model no other device holds, rather than a second load of a
    assert pool.take("cuda:0").model == "a"
    assert pool.take("cuda:0").model == "a"
    assert pool.take("cuda:0").model == "b"  # a's cells are done: help with b's rather than idle
    assert pool.take("cuda:1").model == "b"
    assert pool.take("cuda:1") is None
    pool = Pool(cells)
    pool.stopped = True
    assert pool.take("cuda:0") is None


def test_devices_are_checked_before_anything_runs():
    assert slots([], "cpu") == [Slot("cpu", "cpu")]
    with pytest.raises(UserError, match="cuda:N, cpu:N, or all"):
        slots(["gpu0"], "cpu")
    with pytest.raises(UserError, match="listed twice"):
        slots(["cpu:0", "cpu:0"], "cpu")
    with pytest.raises(UserError, match="not both"):
        slots(["cpu:0", "cuda:0"], "cpu")
    with pytest.raises(UserError, match="cores to pin"):
        slots([f"cpu:{i}" for i in range(len(os.sched_getaffinity(0)) + 1)], "cpu")
    if TWO_CORES:
        a, b = slots(["cpu:0", "cpu:1"], "cpu")
        assert a.cpus and b.cpus and not set(a.cpus) & set(b.cpus)
