"""The compare engine on tiny local models: cells written, resume after SIGKILL, failures as cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mambapoc.cli import main
from mambapoc.results import read_cells

FAST = ["--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "2", "--new-tokens", "2",
        "--price-per-hour", "1.0"]


def _args(tiny_models, tiny_dataset, out, lengths="128,256", tasks="continuation"):
    data_dir, name = tiny_dataset
    models = f"{tiny_models['mamba']},{tiny_models['llama']}"
    return ["compare", "--dataset", name, "--data-dir", str(data_dir), "--models", models,
            "--lengths", lengths, "--tasks", tasks, "--out", str(out), *FAST]


def test_two_models_two_lengths(tiny_models, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    main(_args(tiny_models, tiny_dataset, out, tasks="continuation,fewshot-classify"))
    cells = read_cells(out).cells
    assert len(cells) == 2 * 2 * 2
    assert {c.family for c in cells} == {"mamba", "transformer"}
    assert {c.length_tokens for c in cells} == {128, 256}
    for c in cells:
        assert c.status == "ok", c
        assert c.prefill_s.n >= 1 and c.prefill_s.p50 > 0
        assert c.decode_ms_per_tok > 0 and c.decode_tok_s > 0
        assert c.prompt_tokens <= c.length_tokens
        assert c.cost_usd_per_1m_input > 0 and c.cost_usd_per_request > 0
        assert c.state_bytes > 0 and c.peak_mem_bytes > 0
    cont = [c for c in cells if c.task == "continuation"]
    assert all(c.metrics["bits_per_byte"] > 0 for c in cont)
    few = [c for c in cells if c.task == "fewshot-classify"]
    assert all(0 <= c.metrics["accuracy"] <= 1 for c in few)
    # KV cache grows with the context (2 layers x K and V x 2 heads x 16 dims x 4 bytes a token, room for the
    # new tokens included); the Mamba state does not.
    by = {(c.family, c.length_tokens): c.state_bytes for c in cont}
    assert by[("transformer", 256)] - by[("transformer", 128)] == 128 * 2 * 2 * 2 * 16 * 4
    assert by[("mamba", 256)] == by[("mamba", 128)]
    for f in ("config.yaml", "env.json", "models.json", "dataset.yaml"):
        assert (out / f).is_file()
    assert "Next: mambapoc report" in capsys.readouterr().out


def test_existing_run_dir_needs_resume(tiny_models, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.jsonl").write_text("")
    with pytest.raises(SystemExit) as e:
        main(_args(tiny_models, tiny_dataset, out))
    assert e.value.code == 1
    assert "--resume" in capsys.readouterr().err


def test_sigkill_then_resume_loses_and_duplicates_nothing(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_dataset, out, lengths="64,128,192,256")
    proc = subprocess.Popen([sys.executable, "-m", "mambapoc", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_cells(out).cells) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_cells(out).cells)
    assert 2 <= done_before < 8, "the kill should land mid-sweep"
    main(["compare", "--resume", "--out", str(out)])
    ids = [c.cell_id for c in read_cells(out).cells]
    assert len(ids) == 8 and len(set(ids)) == 8


def test_timeout_becomes_a_cell(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_dataset, out, lengths="1024")
    # A cell measures for at least --min-time seconds (or 1000 repeats), so it cannot finish within the timeout.
    args[args.index("--min-time") + 1] = "30"
    main([*args, "--cell-timeout", "2"])
    cells = read_cells(out).cells
    assert len(cells) == 2
    assert all(c.status == "timeout" and "cell-timeout" in c.error for c in cells)


def test_oom_becomes_a_cell_and_the_sweep_goes_on(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_dataset, out, lengths="128,4096")
    main([*args, "--memory-limit", "24MB"])
    cells = {(c.family, c.length_tokens): c for c in read_cells(out).cells}
    assert len(cells) == 4
    assert cells[("transformer", 4096)].status == "oom", cells[("transformer", 4096)]
    assert cells[("transformer", 128)].status == "ok"


def test_bad_model_spec_is_one_line(tiny_dataset, tmp_path, capsys):
    data_dir, name = tiny_dataset
    with pytest.raises(SystemExit) as e:
        main(["compare", "--dataset", name, "--data-dir", str(data_dir), "--models", "bundled:nope",
              "--out", str(tmp_path / "r")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err


def test_bad_recipe_names_the_field(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("compare:\n  lengths: [1k, banana]\n")
    with pytest.raises(SystemExit) as e:
        main(["run", str(recipe)])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "compare.lengths" in err and "banana" in err


def test_results_survive_a_torn_line(tmp_path):
    from mambapoc.results import Cell, ResultStore

    a, c = (Cell(model=m, task="needle", length_tokens=128, status="ok") for m in ("a", "c"))
    (tmp_path / "results.jsonl").write_text(json.dumps(a.to_json()) + "\n" + '{"model": "b", "st')
    assert [x.cell_id for x in read_cells(tmp_path).cells] == ["a|needle|128"]
    ResultStore(tmp_path).append(c)
    assert [x.cell_id for x in read_cells(tmp_path).cells] == ["a|needle|128", "c|needle|128"]
