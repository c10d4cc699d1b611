"""`compare`, `run` and `demo`: the commands that measure models and chain the stages."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from mambapoc.cli import app
from mambapoc.errors import UserError

DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
console = Console(stderr=True)


def _default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _compare(cfg, run_dir: Path, resume: bool) -> list[dict]:
    from mambapoc.bench.display import LiveDisplay, cells_table
    from mambapoc.bench.engine import run_compare

    try:
        cells = run_compare(cfg, run_dir, resume, LiveDisplay(console))
    except KeyboardInterrupt:
        from mambapoc.bench.store import read_cells

        n = len(read_cells(run_dir))
        console.print(f"\n[yellow]Stopped.[/yellow] {n} finished cells are saved in {run_dir}/results.jsonl.")
        console.print(f"Resume with: mambapoc compare --resume --out {run_dir}")
        raise typer.Exit(130) from None
    console.print(cells_table(cells, title=f"Results: {run_dir}"))
    failed = [c for c in cells if c["status"] != "ok"]
    if failed:
        console.print(f"[yellow]{len(failed)} cell(s) did not finish normally[/yellow]: "
                      + "; ".join(f"{c['cell_id']} {c['status']}" for c in failed[:5]))
    return cells


def _report(run_dir: Path, formats: list[str], langs: list[str]) -> list[Path]:
    from mambapoc.report import build

    paths: dict[Path, None] = {}  # ordered and without repeats: cells.csv is shared by the languages
    for lang in langs:
        paths.update(dict.fromkeys(build(run_dir, formats=tuple(formats), lang=lang).values()))
    return list(paths)


@app.command()
def compare(
    dataset: str = typer.Option("sample", help="Dataset name (under the data dir) or dataset directory."),
    models: str = typer.Option(
        "bundled:mamba-tiny,bundled:transformer-tiny",
        help="Comma-separated model specs: bundled:NAME, a Hugging Face id, or a local checkpoint directory.",
    ),
    lengths: str = typer.Option("1k,4k", help="Prompt lengths in tokens; 1k = 1024, 64k = 65536."),
    tasks: str = typer.Option(
        "continuation,fewshot-classify,needle",
        help="Comma-separated tasks, options in brackets: needle, fewshot-classify[symbol_labels=true]. "
        "See `mambapoc tasks list`.",
    ),
    device: str = typer.Option("auto", help="auto (GPU if present), cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."),
    batch_size: int = typer.Option(1, help="Prompts per forward pass (the same prompt repeated)."),
    new_tokens: int = typer.Option(16, help="Tokens decoded greedily after each prompt to time decoding."),
    repeats: int = typer.Option(3, help="Minimum measured repetitions per cell (after warmup)."),
    min_time: float = typer.Option(1.0, help="Minimum seconds of measured repetitions per cell."),
    warmup: int = typer.Option(1, help="Unmeasured repetitions before timing."),
    instances: int = typer.Option(20, help="Task instances scored per cell (accuracy and its interval)."),
    cell_timeout: float = typer.Option(1800.0, help="Seconds a cell may run before it is recorded as a timeout."),
    memory_limit: str = typer.Option(None, help="Cap each worker's extra memory (e.g. 8GB) to emulate a "
                                     "smaller machine; cells that need more are recorded as OOM."),
    threads: int = typer.Option(None, help="CPU threads per worker (default: torch's default)."),
    mamba_impl: str = typer.Option("ours", help="Run Mamba checkpoints on ours, hf (transformers), or both."),
    seed: int = typer.Option(0, help="Seed for task sampling."),
    pricing: Path = typer.Option(None, help="YAML file of device-hour prices (default recipes/pricing.yaml)."),
    price_per_hour: float = typer.Option(None, help="Price of one device-hour in USD (overrides --pricing)."),
    requests_per_day: int = typer.Option(10_000, help="Workload for the monthly cost estimate."),
    workload_length: str = typer.Option(None, help="Prompt length of that workload (default: longest length)."),
    data_dir: Path = typer.Option(None, help="Where datasets live (default $MAMBAPOC_DATA_DIR or ./data)."),
    out: Path = typer.Option(None, help="Run directory (default runs/compare-DATE-TIME)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished cells."),
) -> None:
    """Measure models side by side: prefill and decode speed, peak memory, state size, task accuracy and
    cost, for every model x length x task cell. Each model runs in its own process; each finished cell is
    saved at once to RUN_DIR/results.jsonl."""
    from mambapoc.bench.config import CompareConfig

    if resume and out is None:
        raise UserError("--resume needs --out RUN_DIR (the run to continue)")
    cfg = CompareConfig.from_dict({
        "dataset": dataset, "models": models, "lengths": lengths, "tasks": tasks, "device": device,
        "dtype": dtype, "batch_size": batch_size, "new_tokens": new_tokens, "repeats": repeats,
        "min_time_s": min_time, "warmup": warmup, "instances": instances, "cell_timeout_s": cell_timeout,
        "memory_limit_bytes": memory_limit, "threads": threads, "mamba_impl": mamba_impl, "seed": seed,
        "pricing_file": str(pricing) if pricing else None, "price_per_hour_usd": price_per_hour,
        "requests_per_day": requests_per_day, "workload_length": workload_length,
        "data_dir": str(data_dir) if data_dir else None,
    }, where="option")
    run_dir = out or _default_run_dir("compare")
    if resume:
        console.print(f"Resuming {run_dir} with the settings saved in its config.yaml.")
    _compare(cfg, run_dir, resume)
    typer.echo(f"Run directory: {run_dir}")
    typer.echo(f"Next: mambapoc report {run_dir}")


def run_recipe(recipe_path: Path, out: Path | None, data_dir: Path | None, resume: bool) -> None:
    from mambapoc.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    if data_dir is not None:
        recipe.compare.data_dir = str(data_dir)
    if recipe.ingest is not None and not resume:
        from mambapoc.ingest import ingest

        opts = {k: v for k, v in recipe.ingest.items() if k not in ("paths", "format")}
        result = ingest(recipe.ingest["paths"], data_dir=data_dir, fmt=recipe.ingest.get("format", "auto"), **opts)
        console.print(f"Dataset: {result.path}")
    run_dir = out or _default_run_dir(recipe.name)
    _compare(recipe.compare, run_dir, resume)
    paths = _report(run_dir, recipe.report_formats, recipe.report_langs)
    for p in paths:
        typer.echo(f"Report: {p.resolve()}")
    html = [p for p in paths if p.suffix == ".html"]
    if html:
        typer.echo(f"Open {html[0].resolve().as_uri()} in a browser.")


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/): ingest, compare and report settings."),
    out: Path = typer.Option(None, help="Run directory (default runs/RECIPE-DATE-TIME)."),
    data_dir: Path = typer.Option(None, help="Where datasets live (default $MAMBAPOC_DATA_DIR or ./data)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished cells."),
) -> None:
    """Run a whole recipe: ingest its sources, compare its models, write its report. A recipe with
    `kind: paper-icl` reproduces the in-context learning experiments instead (docs/paper.md)."""
    if resume and out is None:
        raise UserError("--resume needs --out RUN_DIR (the run to continue)")
    from mambapoc.paper.recipe import is_paper_recipe

    if is_paper_recipe(recipe):
        if data_dir is not None:
            raise UserError("--data-dir does not apply to paper-icl recipes (their data is generated)")
        from mambapoc.paper.run import run_paper_recipe

        report = run_paper_recipe(recipe, out, resume).resolve()
        typer.echo(f"Report: {report}")
        typer.echo(f"Open {report.as_uri()} in a browser.")
        return
    run_recipe(recipe, out, data_dir, resume)


@app.command()
def demo(
    out: Path = typer.Option(None, help="Run directory (default runs/demo-DATE-TIME)."),
    data_dir: Path = typer.Option(None, help="Where the sample dataset is written (default ./data)."),
) -> None:
    """The whole pipeline on the bundled sample logs and tiny models, offline, on CPU, in a few minutes
    (recipes/demo.yaml)."""
    run_recipe(DEMO_RECIPE, out, data_dir, resume=False)
