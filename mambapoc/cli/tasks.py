"""`mambapoc tasks`: the task families, and a preview of the prompts a comparison would score."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mambapoc.cli.app import app
from mambapoc.errors import UserError

tasks_app = typer.Typer(
    help="Task families built from your own logs: list them, preview their prompts.",
    no_args_is_help=True,
)
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("list")
def list_tasks() -> None:
    """List the task families, each with its options and their defaults."""
    from mambapoc.tasks import FAMILIES

    for name in sorted(FAMILIES):
        family = FAMILIES[name]
        typer.echo(f"{name}: {family.description}")
        options = ", ".join(f"{k}={_show(v)}" for k, v in family.options.items())
        typer.echo(f"    options: {options}")
    typer.echo(
        "Every task also takes noise_rate (0.1 to 0.5 replaces that share of the context) and noise_kind "
        "(irrelevant or corrupted; also flipped for fewshot-classify and nlp-algorithmic)."
    )
    typer.echo("Next: `mambapoc tasks preview --dataset NAME --task TASK --length 1k --model SPEC`.")


def _show(value) -> str:
    return (
        ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, tuple)
        else repr(value)
    )


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"option {pair!r} is not KEY=VALUE (for example -o symbol_labels=true)")
        options[key.strip()] = value.strip()
    return options


@tasks_app.command()
def preview(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Dataset name (or directory) made by `mambapoc ingest`."
    ),
    task: str = typer.Option(..., "--task", "-t", help="Task family; see `mambapoc tasks list`."),
    length: str = typer.Option("1k", "--length", "-l", help="Prompt length in tokens: 1024, 1k, 8k, 64k."),
    model: str = typer.Option(..., "--model", "-m", help="Model spec whose tokenizer counts the tokens."),
    n: int = typer.Option(3, "--n", "-n", help="How many instances."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same instances."),
    option: list[str] = typer.Option([], "--option", "-o", help="Task option KEY=VALUE; repeatable."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Where datasets live (default: $MAMBAPOC_DATA_DIR or data/)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output file; .jsonl writes one instance per line, else text."
    ),
) -> None:
    """Write rendered prompts with their answers to a file for inspection."""
    from mambapoc.fsutil import write_atomic
    from mambapoc.ingest.dataset import load_records, resolve_dataset
    from mambapoc.models.registry import load_tokenizer
    from mambapoc.tasks import build_instances, parse_length

    tokens = parse_length(length)
    records = load_records(resolve_dataset(dataset, data_dir))
    tokenizer = load_tokenizer(model)
    instances = build_instances(task, records, tokenizer, tokens, n, seed, **_options(option))
    path = out or Path(f"preview-{task}-{tokens}.txt")
    if path.suffix == ".jsonl":
        text = "".join(inst.to_json() + "\n" for inst in instances)
    else:
        header = f"# mambapoc tasks preview: task={task} length={tokens} model={model} dataset={dataset}"
        text = f"{header} seed={seed}\n" + "".join(_render(inst) for inst in instances)
    write_atomic(path, text)
    counts = [len(inst.prompt_ids) for inst in instances]
    span = f"{min(counts)}-{max(counts)} tokens (target {tokens})"
    typer.echo(f"wrote {len(instances)} {task} prompts of {span} to {path}")
    typer.echo(f"Next: read them, then compare models on this task with `mambapoc compare --tasks {task}`.")


def _render(inst) -> str:
    rule, bar = "-" * 24, "=" * 24
    parts = [
        f"\n{bar} instance {inst.index} ({len(inst.prompt_ids)} tokens, scored by {inst.scoring}) {bar}\n",
        f"meta: {json.dumps(inst.meta, ensure_ascii=False, sort_keys=True)}\n",
        f"{rule} prompt {rule}\n{inst.prompt}\n",
        f"{rule} answer {rule}\n{inst.answer}\n",
    ]
    if inst.choices:
        parts.append(f"{rule} choices {rule}\n" + "\n".join(repr(c) for c in inst.choices) + "\n")
    return "".join(parts)
