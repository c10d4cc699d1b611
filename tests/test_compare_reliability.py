"""compare under duress: memory limits, stalls, dead parents, two processes, resume, bad input, noise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from mambapoc.bench import runner
from mambapoc.bench.memory import Cgroup
from mambapoc.bench.timing import Conditions, judge, measure, repeat
from mambapoc.cli import main
from mambapoc.results import read_cells

FAST = ["--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "2", "--new-tokens", "2",
        "--price-per-hour", "1.0"]


def _args(tiny_models, tiny_dataset, out, lengths="128", tasks="continuation", models=("mamba", "llama")):
    data_dir, name = tiny_dataset
    specs = ",".join(str(tiny_models[m]) for m in models)
    return ["compare", "--dataset", name, "--data-dir", str(data_dir), "--models", specs, "--lengths", lengths,
            "--tasks", tasks, "--out", str(out), *FAST]


def _one_line_error(capsys, call) -> str:
    """The error line of a call that must fail with exit status 1, no traceback, and leave no other trace."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        call()
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert e.value.code == 1 and last.startswith("error: ") and "Traceback" not in err, err
    return last


# --- timing ------------------------------------------------------------------------------------------


def test_the_repeat_loop_meets_both_the_count_and_the_time_on_a_fake_clock():
    now = [0.0]

    def once():
        now[0] += 0.25
        return {"prefill": 0.25}

    samples = repeat(once, warmup=2, min_repeats=2, min_time_s=1.0, clock=lambda: now[0])
    assert len(samples["prefill"]) == 4  # 2 repeats would do for the count; 1 s of them takes 4
    now[0] = 0.0
    assert len(repeat(once, warmup=0, min_repeats=6, min_time_s=1.0, clock=lambda: now[0])["prefill"]) == 6


def _runs(times_per_attempt):
    """A run_once that plays back prefill times, attempt after attempt (warmup runs take 1 s)."""
    queue = [t for attempt in times_per_attempt for t in attempt]

    def once():
        t = queue.pop(0)
        return {"prefill": t, "decode": 0.1}

    return once


def test_an_injected_slow_repeat_is_measured_again_and_marked_if_it_stays():
    steady, slow = [0.10] * 5, [0.10, 0.10, 0.10, 0.10, 0.40]
    m = measure(_runs([slow, slow, slow]), 0, 5, 0, retries=2, max_spread=0.25, max_pressure=1)
    assert m.attempts == 3 and not m.verdict.stable and "prefill" in m.verdict.reason
    again = measure(_runs([slow, steady]), 0, 5, 0, retries=2, max_spread=0.25, max_pressure=1)
    assert again.attempts == 2 and again.verdict.stable and again.samples["prefill"] == steady


def test_a_busy_machine_makes_a_measurement_unstable():
    quiet = Conditions(wall_s=1, cpu_s=2, load_avg_1m=0.5, cpu_pressure=0.02)
    busy = Conditions(wall_s=1, cpu_s=1, load_avg_1m=4.0, cpu_pressure=0.6)
    samples = {"prefill": [0.1] * 5, "decode": [0.2] * 5}
    assert judge(samples, quiet, 0.25, 0.2).stable
    verdict = judge(samples, busy, 0.25, 0.2)
    assert not verdict.stable and "waited for a CPU 60%" in verdict.reason


# --- memory limit ------------------------------------------------------------------------------------


def test_a_cgroup_limit_is_written_and_its_oom_kills_read(tmp_path):
    root = tmp_path / "cgroup"
    own = root / "user.slice" / "job"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("cpu memory pids\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/job\n")
    group = Cgroup.create("mambapoc-1", root, proc)
    assert group is not None and group.path == own / "mambapoc-1"
    (group.path / "memory.current").write_text("1000\n")
    group.limit(500)
    assert (group.path / "memory.max").read_text() == "1500" and (group.path / "memory.swap.max").read_text() == "0"
    group.limit(None)
    assert (group.path / "memory.max").read_text() == "max"
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1
    (own / "cgroup.subtree_control").write_text("cpu pids\n")
    assert Cgroup.create("mambapoc-2", root, proc) is None  # no memory controller delegated: the watchdog
    proc.write_text("4:memory:/user.slice\n")
    assert Cgroup.create("mambapoc-3", root, proc) is None  # cgroup v1


def _oom_run(tiny_models, tiny_dataset, out):
    main([*_args(tiny_models, tiny_dataset, out, lengths="128,4096", models=("llama",)), "--memory-limit", "24MB"])
    cells = {c.length_tokens: c for c in read_cells(out).cells}
    assert cells[128].status == "ok", cells[128]
    big = cells[4096]
    assert big.status == "oom" and "--memory-limit" in big.error, big
    assert big.wall_s < 30, "found within seconds, not at the cell timeout"


def test_memory_limit_by_the_watchdog_alone(tiny_models, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(runner.Cgroup, "create", classmethod(lambda cls, name: None))
    _oom_run(tiny_models, tiny_dataset, tmp_path / "run")


@pytest.mark.skipif(Cgroup.create(f"mambapoc-probe-{os.getpid()}") is None,
                    reason="this process may not create a cgroup v2 with the memory controller")
def test_memory_limit_by_a_cgroup(tiny_models, tiny_dataset, tmp_path):
    Cgroup(Path(f"/sys/fs/cgroup/mambapoc-probe-{os.getpid()}")).remove()
    _oom_run(tiny_models, tiny_dataset, tmp_path / "run")


# --- stalls and dead parents -------------------------------------------------------------------------


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "multiprocessing" in " ".join(p.cmdline())]


def test_a_stalled_worker_is_recorded_and_the_sweep_goes_on(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_dataset, out, lengths="64,128,192", models=("mamba",))
    args[args.index("--min-time") + 1] = "1"
    done = threading.Thread(target=lambda: main([*args, "--stall-timeout", "3"]))
    done.start()
    deadline = time.time() + 120
    while time.time() < deadline and not read_cells(out).cells:
        time.sleep(0.1)
    stopped = _workers()
    assert stopped, "the worker should be running the second cell"
    for p in stopped:
        p.send_signal(signal.SIGSTOP)  # no messages, no CPU: what a deadlocked worker looks like
    done.join(timeout=180)
    assert not done.is_alive()
    cells = {c.length_tokens: c for c in read_cells(out).cells}
    assert cells[64].status == "ok" and cells[128].status == "stalled" and "no CPU" in cells[128].error
    assert cells[192].status == "ok", "a new worker takes the rest of the sweep"


PARENT = textwrap.dedent("""
    import multiprocessing as mp, sys, time
    from mambapoc.bench import launch
    ctx = mp.get_context("spawn")
    child = launch.spawn(ctx, "time:sleep", 120)
    print(child.pid, flush=True)
    time.sleep(float(sys.argv[1]))
    time.sleep(120)
""")


@pytest.mark.parametrize("wait", [0.0, 3.0], ids=["during-its-start", "while-it-runs"])
def test_a_worker_dies_with_its_parent(wait):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(wait)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(wait)
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        psutil.Process(child).kill()
        pytest.fail("the worker outlived its parent")


# --- one process per run directory, and resume --------------------------------------------------------


def test_resume_reruns_failed_cells_with_new_limits_and_one_process_holds_a_run(
        tiny_models, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = _args(tiny_models, tiny_dataset, out, lengths="512,1024", models=("mamba",))
    args[args.index("--min-time") + 1] = "30"  # cannot finish (30 s or 1000 repeats) within the timeout below
    main([*args, "--cell-timeout", "2"])
    assert {c.status for c in read_cells(out).cells} == {"timeout"}
    resume = ["compare", "--resume", "--out", str(out)]

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom mambapoc.fsutil import exclusive\n"
                               "with exclusive(sys.argv[1], 'x'):\n    print('held', flush=True)\n    time.sleep(60)",
                               str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = _one_line_error(capsys, lambda: main([*resume, "--cell-timeout", "60"]))
        assert f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()

    err = _one_line_error(capsys, lambda: main([*resume, "--lengths", "512,1024,2048"]))
    assert "cannot change lengths" in err and "another --out" in err
    main([*resume, "--keep-failed"])
    assert {c.status for c in read_cells(out).cells} == {"timeout"}
    main([*resume, "--cell-timeout", "120", "--min-time", "0"])
    assert {c.status for c in read_cells(out).cells} == {"ok"}
    assert (out / "results.jsonl").read_text().count("\n") == 4  # the failed lines stay, the reruns follow
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["compare"]["cell_timeout_s"] == 120 and saved["compare"]["min_time_s"] == 0
    assert set(saved["resumed"][-1]["changed"]) == {"cell_timeout_s", "min_time_s"}


# --- checks before anything runs ---------------------------------------------------------------------


def test_bad_options_are_one_line_errors_that_leave_nothing(tiny_models, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    base = _args(tiny_models, tiny_dataset, out)
    for price in ("nan", "-3", "inf"):
        err = _one_line_error(capsys, lambda p=price: main([*base[:-2], "--price-per-hour", p]))
        assert "price_per_hour" in err
    for bad in (["--models", "bundled:nope"], ["--dataset", "nope"], ["--max-spread", "0"],
                ["--stall-timeout", "-1"]):
        _one_line_error(capsys, lambda b=bad: main([*base, *b]))
        assert not out.exists(), f"{bad} left a run directory behind"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in _one_line_error(capsys, lambda: main([*base[:base.index("--out")], "--out", str(a_file),
                                                                  *FAST]))
    assert "--keep-failed applies to --resume" in _one_line_error(capsys, lambda: main([*base, "--keep-failed"]))


@pytest.mark.parametrize("config,message", [
    ("", "has no compare settings"), ("compare: [1\n", "is not valid YAML"), (None, "has no config.yaml")])
def test_resume_of_a_broken_run_is_a_one_line_error(tmp_path, capsys, config, message):
    out = tmp_path / "run"
    out.mkdir()
    if config is not None:
        (out / "config.yaml").write_text(config)
    assert message in _one_line_error(capsys, lambda: main(["compare", "--resume", "--out", str(out)]))


def test_a_recipe_is_checked_whole_before_its_first_step(tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("2024-01-01 10:00:00 INFO started\n" * 20)
    data = tmp_path / "data"
    for body, message in (
        ("ingest: {paths: [logs]}\nreport: {lang: [fr]}\n", "report.lang"),
        ("compare: 5\n", "compare: expected a mapping"),
        ("compare: {lengths: 512, tasks: [nope]}\n", "unknown task 'nope'"),
        ("ingest: {paths: [logs]}\ncompare: {models: [bundled:nope]}\n", "no bundled model named 'nope'"),
    ):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(body)
        assert message in _one_line_error(capsys, lambda r=recipe: main(["run", str(r), "--data-dir", str(data)]))
        assert not data.exists() and not (tmp_path / "runs").exists()
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x00\xff\xfe\x89PNG")
    assert "not a text file" in _one_line_error(capsys, lambda: main(["run", str(binary)]))


def test_the_recipes_data_dir_is_where_its_ingest_writes(tmp_path, monkeypatch):
    import mambapoc.bench.engine as engine
    from mambapoc.pipeline import run_file

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("2024-01-01 10:00:00 INFO started\n" * 20)
    (tmp_path / "r.yaml").write_text("ingest: {paths: [logs], name: mine}\ncompare: {data_dir: store}\n")
    seen = {}
    monkeypatch.setattr(engine, "run_compare", lambda cfg, *a, **k: seen.update(data_dir=cfg.data_dir) or [])
    monkeypatch.setattr("mambapoc.pipeline.write_reports", lambda *a: [])
    done = run_file(tmp_path / "r.yaml", out=tmp_path / "run")
    assert done.dataset == tmp_path / "store" / "mine" and Path(seen["data_dir"]) == tmp_path / "store"


def test_compare_help_keeps_the_task_option_brackets():
    from typer.testing import CliRunner

    from mambapoc.cli import app

    result = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert "fewshot-classify[symbol_labels=true]" in result.output
    assert "[default: (1k,4k)]" in result.output, "the defaults shown are CompareConfig's"


# --- repeatable memory, interleaving --------------------------------------------------------------------


def test_peak_memory_repeats_and_grows_with_length_and_interleave_alternates(tiny_models, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    # needle and needle[num_choices=4] build the same prompts: the same cell, measured twice.
    main([*_args(tiny_models, tiny_dataset, out, lengths="512,1024,2048", tasks="needle,needle[num_choices=4]"),
          "--interleave"])
    cells = read_cells(out).cells
    assert all(c.ok for c in cells) and len(cells) == 12
    assert [c.family for c in cells] == ["mamba", "transformer"] * 6, "results.jsonl is in the order cells ran"
    for family in ("mamba", "transformer"):
        peak = {(c.length_tokens, c.task_key): c.peak_mem_bytes for c in cells if c.family == family}
        for n in (512, 1024, 2048):
            a, b = peak[(n, "needle")], peak[(n, "needle[num_choices=4]")]
            assert abs(a - b) <= 0.1 * max(a, b), (family, n, a, b)
        by_length = [peak[(n, "needle")] for n in (512, 1024, 2048)]
        assert by_length == sorted(by_length), (family, by_length)
    kv = {c.length_tokens: c.peak_mem_bytes for c in cells if c.family == "transformer" and c.task_key == "needle"}
    assert kv[2048] > kv[512], "a Transformer's KV cache grows with the context"
