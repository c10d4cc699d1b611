"""`mambapoc project`: how many requests models would serve on deployment cards, from their config.json."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mambapoc.cli.app import app
from mambapoc.errors import UserError


def _footprint(spec: str, dtype: str):
    from mambapoc.models.footprint import footprint
    from mambapoc.models.registry import model_footprint

    path = Path(spec)
    if path.is_file():  # a config.json on its own: no weights to count
        import torch

        try:
            cfg = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read {path} as a config.json: {e}") from None
        return footprint(cfg, torch.empty((), dtype=getattr(torch, dtype)).element_size())
    return model_footprint(spec, dtype)


@app.command()
def project(
    models: list[str] = typer.Argument(..., help="Model specs (bundled:NAME, a checkpoint directory, a Hugging "
                                       "Face id in the local cache) or config.json files.", show_default=False),
    lengths: str = typer.Option("1k,8k,64k", help="Prompt lengths in tokens."),
    cards: str = typer.Option("24GB,80GB,141GB", help="Device memory sizes to fit requests on."),
    dtype: str = typer.Option("bfloat16", help="The dtype the models would serve in."),
) -> None:
    """Memory per request (weights, KV cache, SSM state) and the requests that fit on each card, computed
    from each model's configuration: a sizing estimate, not a measurement (`compare --batch-sizes auto`
    measures)."""
    from mambapoc.bench.config import parse_size
    from mambapoc.report import fmt
    from mambapoc.tasks.spec import parse_lengths

    if dtype not in ("bfloat16", "float16", "float32"):
        raise UserError(f"--dtype {dtype}: use bfloat16, float16 or float32")
    ns = parse_lengths(lengths)
    sizes = {c.strip(): parse_size(c.strip()) for c in cards.split(",") if c.strip()}
    table = Table(title=f"Computed from config.json in {dtype}: not measured", header_style="bold")
    for col in ("model", "family", "weights", "", *(fmt.tokens(n) for n in ns)):
        table.add_column(col, justify="right" if col not in ("model", "family", "") else "left")
    for spec in models:
        fp = _footprint(spec, dtype)
        weights = fmt.size(fp.weights_bytes) + (" (est.)" if fp.estimated_weights else "")
        table.add_row(spec, fp.family, weights, "memory per request", *(fmt.size(fp.per_request(n)) for n in ns))
        for card, size in sizes.items():
            table.add_row("", "", "", f"requests on {card}", *(fmt.count(fp.fits(size, n)) for n in ns))
    Console().print(table)
