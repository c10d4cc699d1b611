"""`compare`, `run` and `demo`: the commands that measure models and chain the stages."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mambapoc.bench.config import CompareConfig
from mambapoc.cli.app import app
from mambapoc.errors import UserError

console = Console(stderr=True)
D = CompareConfig()  # the defaults, written once, shown in the help
DEMO = Path("demo")  # the bundled recipe `mambapoc demo` runs
_SET_HELP = "Change a recipe field before it runs, e.g. --set compare.lengths=[512,1k] (repeatable)."


def _lengths(values: list[int]) -> str:
    return ",".join(f"{v // 1024}k" if v % 1024 == 0 else str(v) for v in values)


def _show_cells(cells: list, run_dir: Path) -> None:
    from rich.markup import escape

    from mambapoc.bench.display import cells_table

    console.print(cells_table(cells, title=f"Results: {run_dir}"))
    failed = [c for c in cells if not c.ok]
    if failed:
        console.print(f"[yellow]{len(failed)} cell(s) did not finish normally[/yellow]: "
                      + escape("; ".join(f"{c.cell_id} {c.status}" for c in failed[:5])))


def _stopped(run_dir: Path, resume_hint: str) -> typer.Exit:
    from mambapoc.results import read_cells

    n = len(read_cells(run_dir).cells)
    console.print(f"\n[yellow]Stopped.[/yellow] {n} finished cells are saved in {run_dir}/results.jsonl.")
    console.print(f"Resume with: {resume_hint}")
    return typer.Exit(130)


def _opt(help_text: str, default: object = None):
    """An option left unset unless given (CompareConfig fills in the rest); its help shows the default."""
    return typer.Option(None, help=help_text, show_default=str(default) if default is not None else False)


@app.command()
def compare(
    dataset: str = _opt("Dataset name (under the data dir) or dataset directory.", D.dataset),
    models: str = _opt("Comma-separated model specs: bundled:NAME, a Hugging Face id, or a local checkpoint "
                       "directory.", ",".join(D.models)),
    lengths: str = _opt("Prompt lengths in tokens; 1k = 1024, 64k = 65536.", _lengths(D.lengths)),
    tasks: str = _opt("Comma-separated tasks, options in brackets: needle, fewshot-classify\\[symbol_labels=true]. "
                      "See `mambapoc tasks list`.", ",".join(t.key for t in D.tasks)),
    device: str = _opt("auto (GPU if present), cpu or cuda.", D.device),
    dtype: str = _opt("auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.", D.dtype),
    batch_size: int = _opt("Prompts per forward pass (the same prompt repeated).", D.batch_size),
    new_tokens: int = _opt("Tokens decoded greedily after each prompt to time decoding.", D.new_tokens),
    repeats: int = _opt("Minimum measured repetitions per cell (after warmup).", D.repeats),
    min_time: float = _opt("Minimum seconds of measured repetitions per cell.", f"{D.min_time_s:g}"),
    warmup: int = _opt("Unmeasured repetitions before timing.", D.warmup),
    instances: int = _opt("Task instances scored per cell (accuracy and its interval).", D.instances),
    cell_timeout: float = _opt("Seconds a cell may run before it is recorded as a timeout.", f"{D.cell_timeout_s:g}"),
    stall_timeout: float = _opt("Seconds a worker may send nothing and use no CPU before its cell is recorded "
                                "as stalled.", f"{D.stall_timeout_s:g}"),
    memory_limit: str = _opt("Cap each worker's extra memory (e.g. 8GB) to emulate a smaller machine; cells "
                             "that need more are recorded as OOM."),
    threads: int = _opt("CPU threads per worker (default: torch's default)."),
    devices: str = _opt("Spread the cells over several devices, one worker on each: cuda:0,cuda:1, all (every "
                        "GPU), or shares of the CPU, cpu:0,cpu:1 (each worker pinned to its own cores)."),
    executor: str = _opt("local: this machine's workers; ray: each model run a task on a Ray cluster, its "
                         "cells streamed back as they finish (pip install 'mambapoc\\[ray]'; docs/compare.md).",
                         D.executor),
    ray_address: str = _opt("With --executor ray: auto (this machine's cluster, or $RAY_ADDRESS), local (start "
                            "one here), the head's HOST:PORT, or ray://HOST:PORT (Ray Client, from outside "
                            "the cluster).", D.ray_address),
    ray_gpus_per_task: float = _opt("With --executor ray on GPUs: each task's share of a GPU.",
                                    f"{D.ray_gpus_per_task:g}"),
    ray_cpus_per_task: int = _opt("With --executor ray: CPUs each task asks for (default: 1 with GPUs; on a CPU "
                                  "cluster --threads, else 1); its worker computes with --threads, else as many "
                                  "threads."),
    mamba_impl: str = _opt("Run models with SSM layers (Mamba-1/2, hybrids) on ours, hf (transformers), or both.", D.mamba_impl),
    seed: int = _opt("Seed for task sampling.", D.seed),
    pricing: Path = _opt("YAML file of device-hour prices (default: the bundled recipes/pricing.yaml)."),
    price_per_hour: float = _opt("Price of one device-hour in USD (instead of a pricing file)."),
    requests_per_day: int = _opt("Workload for the monthly cost estimate.", D.requests_per_day),
    workload_length: str = _opt("Prompt length of that workload (default: the longest length)."),
    interleave: bool = typer.Option(None, "--interleave/--no-interleave", show_default=False,
                                    help="Alternate the models cell by cell, each in its own warm worker, so "
                                    "that a busy machine slows them alike (holds all models in memory)."),
    max_spread: float = _opt("How much slower than the median the slowest tenth of a cell's runs may be (0.25 = "
                             "25 %) before it is measured again and, if still so, marked unstable.",
                             f"{D.max_spread:g}"),
    remeasure: int = _opt("How many times an unstable cell is measured again.", D.remeasure),
    prefill_chunk: str = _opt("Read prompts in pieces of this many tokens, every model alike (Transformers "
                              "through their KV cache, Mamba through its state); 0 reads each prompt whole.",
                              D.prefill_chunk),
    kv_cache: str = _opt("A Transformer's cache for timed requests: static (allocated once for the prompt and "
                         "the new tokens; falls back to dynamic, and says so, where a model has none) or "
                         "dynamic.", D.kv_cache),
    batch_sizes: str = _opt("Serving capacity: batch sizes to measure, e.g. 1,8,32, and/or auto for the largest "
                            "batch that fits --memory-budget and the latency bounds (found by doubling and "
                            "bisection)."),
    memory_budget: str = _opt("Memory a serving device offers, weights included, e.g. 40GB to emulate a smaller "
                              "card (default: what the device has free; on a CPU, available RAM)."),
    max_token_latency: str = _opt("Serving capacity keeps each generated token within this, e.g. 50ms."),
    max_ttft: str = _opt("Serving capacity keeps the time to the first token within this, e.g. 2s."),
    max_batch: int = _opt("The largest batch the capacity search tries.", D.max_batch),
    compile: bool = typer.Option(None, "--compile/--no-compile", show_default=False,
                                 help="torch.compile the decode step of every model (CUDA graphs on a GPU); "
                                 "compilation happens in the warm-up runs."),
    data_dir: Path = _opt("Where datasets live (default $MAMBAPOC_DATA_DIR or ./data)."),
    out: Path = typer.Option(None, help="Run directory (default runs/compare-DATE-TIME)."),
    resume: bool = typer.Option(False, help="Continue the run in --out: run the cells not yet finished and "
                                "again those that failed. Time limits, the memory limit, repeats and the "
                                "stability settings given now apply to them."),
    keep_failed: bool = typer.Option(False, help="With --resume: leave failed cells (oom, timeout, stalled, "
                                     "error) as they are."),
) -> None:
    """Measure models side by side: prefill and decode speed, peak memory, state size, task accuracy and
    cost, for every model x length x task cell. Each model runs in its own process; each finished cell is
    saved at once to RUN_DIR/results.jsonl."""
    from mambapoc.bench.display import LiveDisplay
    from mambapoc.bench.engine import resumed_config, run_compare
    from mambapoc.pipeline import default_run_dir

    if resume and out is None:
        raise UserError("--resume needs --out RUN_DIR (the run to continue)")
    given = {
        "dataset": dataset, "models": models, "lengths": lengths, "tasks": tasks, "device": device,
        "dtype": dtype, "batch_size": batch_size, "new_tokens": new_tokens, "repeats": repeats,
        "min_time_s": min_time, "warmup": warmup, "instances": instances, "cell_timeout_s": cell_timeout,
        "memory_limit_bytes": memory_limit, "threads": threads, "devices": devices, "mamba_impl": mamba_impl, "seed": seed,
        "stall_timeout_s": stall_timeout, "interleave": interleave, "max_spread": max_spread,
        "remeasure": remeasure, "prefill_chunk": prefill_chunk, "kv_cache": kv_cache, "compile": compile,
        "batch_sizes": batch_sizes, "memory_budget_bytes": memory_budget, "max_token_latency_s": max_token_latency,
        "max_ttft_s": max_ttft, "max_batch": max_batch, "executor": executor, "ray_address": ray_address,
        "ray_gpus_per_task": ray_gpus_per_task, "ray_cpus_per_task": ray_cpus_per_task,
        "pricing_file": str(pricing) if pricing else None, "price_per_hour_usd": price_per_hour,
        "requests_per_day": requests_per_day, "workload_length": workload_length,
        "data_dir": str(data_dir) if data_dir else None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if keep_failed and not resume:
        raise UserError("--keep-failed applies to --resume only")
    if resume:
        cfg = resumed_config(out, given)
        console.print(f"Resuming {out} with the settings saved in its config.yaml"
                      + (f", changed: {', '.join(sorted(given))}." if given else "."))
    else:
        cfg = CompareConfig.from_dict(given, where="option")
    run_dir = out or default_run_dir("compare")
    try:
        cells = run_compare(cfg, run_dir, resume, LiveDisplay(console), keep_failed=keep_failed)
    except KeyboardInterrupt:
        raise _stopped(run_dir, f"mambapoc compare --resume --out {run_dir}") from None
    _show_cells(cells, run_dir)
    typer.echo(f"Run directory: {run_dir}")
    typer.echo(f"Next: mambapoc report {run_dir}")


def _run(recipe: Path, out: Path | None, data_dir: Path | None, resume: bool, overrides: list[str]) -> None:
    from mambapoc.bench.display import LiveDisplay
    from mambapoc.pipeline import run_file
    from mambapoc.resources import find_recipe

    path = find_recipe(recipe)
    if path != recipe and recipe != DEMO:
        console.print(f"Using the bundled recipe {path.name} ({path}).")
    started: list[Path] = []
    try:
        done = run_file(path, out, data_dir, resume, overrides, LiveDisplay(console), on_start=started.append)
    except KeyboardInterrupt:
        if not started:
            raise
        raise _stopped(started[0], f"mambapoc run {recipe} --resume --out {started[0]}") from None
    if done.cells:
        _show_cells(done.cells, done.run_dir)
    for p in done.reports:
        typer.echo(f"Report: {p.resolve()}")
    if done.html is not None:
        typer.echo(f"Open {done.html.resolve().as_uri()} in a browser.")


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML: a file, or the name of a bundled recipe (demo, "
                                  "gpu-1k-8k-64k, paper-icl-small, ...)."),
    out: Path = typer.Option(None, help="Run directory (default runs/RECIPE-DATE-TIME)."),
    data_dir: Path = typer.Option(None, help="Where datasets live (default: the recipe's compare.data_dir, "
                                  "else $MAMBAPOC_DATA_DIR or ./data)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished cells."),
    overrides: list[str] = typer.Option(None, "--set", help=_SET_HELP),
) -> None:
    """Run a whole recipe: ingest its sources, compare its models, write its report. A recipe with
    `kind: paper-icl` reproduces the in-context learning experiments instead (docs/paper.md)."""
    if resume and out is None:
        raise UserError("--resume needs --out RUN_DIR (the run to continue)")
    _run(recipe, out, data_dir, resume, overrides or [])


@app.command()
def demo(
    out: Path = typer.Option(None, help="Run directory (default runs/demo-DATE-TIME)."),
    data_dir: Path = typer.Option(None, help="Where the sample dataset is written (default ./data)."),
    overrides: list[str] = typer.Option(None, "--set", help=_SET_HELP),
) -> None:
    """The whole pipeline on the bundled sample logs and tiny models, offline, on CPU, in a few minutes
    (the bundled recipe demo.yaml)."""
    _run(DEMO, out, data_dir, False, overrides or [])
