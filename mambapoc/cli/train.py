"""`mambapoc train`: train the models a recipe describes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mambapoc.cli.app import app


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Training recipe YAML (e.g. recipes/bundled-tiny.yaml)."),
    only: str = typer.Option(None, help="Comma-separated model names of the recipe to train (default: all)."),
    steps: int = typer.Option(None, help="Override the recipe's number of steps (e.g. for a quick check)."),
    device: str = typer.Option(None, help="Override the recipe's device: auto, cpu or cuda."),
    workers: int = typer.Option(None, help="Override the recipe's number of data worker processes."),
    data_dir: Path = typer.Option(None, help="Where the training dataset is ingested (default ./data)."),
) -> None:
    """Train the recipe's models from its data: tokenizer, models, held-out evaluation and model cards.
    Checkpoints are written atomically; rerunning after an interruption resumes at the last one."""
    from mambapoc.train.recipe import load_train_recipe
    from mambapoc.train.run import train_recipe

    r = load_train_recipe(recipe)
    r.device = device or r.device
    r.workers = r.workers if workers is None else workers
    console = Console(stderr=True)
    names = [n.strip() for n in only.split(",")] if only else None
    for path in train_recipe(r, data_dir, names, steps, console):
        typer.echo(f"Model: {path}  (use it as {path} or, under sample_data/models, bundled:{path.name})")
