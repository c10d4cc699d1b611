"""`mambapoc train RECIPE`: ingest the recipe's data, train a tokenizer, train each model, save it as
an ordinary HF checkpoint directory, evaluate it on held-out episodes and write its model card."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from rich.console import Console

from mambapoc.errors import UserError
from mambapoc.fsutil import replace_dir
from mambapoc.train.card import write_card
from mambapoc.train.data import SequenceMaker, split_records
from mambapoc.train.loop import train_model
from mambapoc.train.models import build_model, count_params
from mambapoc.train.recipe import TrainRecipe
from mambapoc.train.tokenizer import train_tokenizer


def evaluate(model_dir: Path, records: list[dict], recipe: TrainRecipe, device: str = "cpu") -> list[dict]:
    from mambapoc.models.registry import load
    from mambapoc.tasks import DatasetTooSmall, build_instances, score
    from mambapoc.tasks.spec import parse_task

    lm = load(str(model_dir), device=device)
    rows = []
    for task_text in recipe.eval_tasks:
        task = parse_task(task_text)
        for length in recipe.eval_lengths:
            row = {"task": task.key, "length": length, "ratio": length / recipe.seq_len}
            try:
                instances = build_instances(task.name, records, lm.tokenizer, length, n=recipe.eval_instances,
                                            seed=recipe.seed + 1, **task.options)
            except DatasetTooSmall as e:
                rows.append({**row, "n": 0, "note": str(e)})
                continue
            m = score(task.name, lm, instances)
            rows.append({**row, "accuracy": m["accuracy"], "ci95": m["ci95"], "chance": m["chance"], "n": m["n"]})
    return rows


def _arch(model, family: str) -> str:
    c = model.config
    if family == "mamba":
        return f"{c.num_hidden_layers} layers, d_model {c.hidden_size}, d_state {c.state_size}, expand {c.expand}"
    if family == "mamba2":
        return (f"Mamba-2: {c.num_hidden_layers} layers, d_model {c.hidden_size}, {c.num_heads} heads of "
                f"{c.head_dim}, d_state {c.state_size}, {c.n_groups} groups")
    # transformers 5 keeps RoPE settings in `rope_parameters`.
    theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", None))
    return (f"Llama: {c.num_hidden_layers} layers, d_model {c.hidden_size}, {c.num_attention_heads} heads, "
            f"MLP {c.intermediate_size}, RoPE θ={theta}, no other position encoding")


def train_recipe(recipe: TrainRecipe, data_dir: Path | None, only: list[str] | None, steps: int | None,
                 console: Console) -> list[Path]:
    from mambapoc.envinfo import accelerator_name, pick_device
    from mambapoc.ingest import ingest
    from mambapoc.ingest.dataset import load_records
    from mambapoc.models.registry import quiet_transformers

    quiet_transformers()
    if recipe.threads:
        torch.set_num_threads(int(recipe.threads))
    names = only or list(recipe.models)
    for n in names:
        if n not in recipe.models:
            raise UserError(f"--only {n}: the recipe has no such model (models: {', '.join(recipe.models)})")
    steps = steps or recipe.steps
    ds = ingest(recipe.paths, name=f"train-{recipe.name}", data_dir=data_dir,
                text_field=recipe.text_field, label_field=recipe.label_field, progress=False)
    records = load_records(ds.path)
    train_recs, held_recs = split_records(records, recipe.holdout_fraction)
    console.print(f"Data: {len(train_recs):,} training records, {len(held_recs):,} held out ({ds.path}).")

    work = recipe.out / f".work-{recipe.name}"
    work.mkdir(parents=True, exist_ok=True)
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        tokenizer = train_tokenizer((r["text"] for r in train_recs), recipe.vocab_size)
        staging = work / ".tokenizer.staging"
        shutil.rmtree(staging, ignore_errors=True)
        tokenizer.save_pretrained(str(staging))
        replace_dir(staging, tok_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    maker = SequenceMaker(train_recs, tokenizer, recipe.seq_len, recipe.mixture, recipe.answer_weight,
                          recipe.seed)
    device = pick_device(recipe.device)
    written = []
    params = {}
    for name in names:
        spec = recipe.models[name]
        model = build_model(spec, len(tokenizer), tokenizer.eos_token_id, recipe.seed)
        params[name] = count_params(model)
        console.print(f"{name}: {spec['family']}, {params[name]:,} parameters")
        state = train_model(
            model, maker, name=name, steps=steps, batch_size=recipe.batch_size, lr=recipe.lr,
            warmup_steps=recipe.warmup_steps, weight_decay=recipe.weight_decay, grad_clip=recipe.grad_clip,
            checkpoint=work / f"{name}.ckpt", checkpoint_every=recipe.checkpoint_every, device=device,
            workers=recipe.workers, hardware=accelerator_name(device), console=console,
        )
        final = recipe.out / name
        staging = recipe.out / f".{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        evaluation = evaluate(staging, held_recs, recipe, device)
        tail = state.losses[-50:]
        write_card(
            staging, name=name, family=spec["family"] if spec["family"] in ("mamba", "mamba2") else "transformer",
            params=params[name], arch=_arch(model, spec["family"]), recipe_name=recipe.name,
            data={"sources": [str(p.name) for p in recipe.paths], "train_records": len(train_recs),
                  "heldout_records": len(held_recs), "mixture": recipe.mixture, "vocab_size": len(tokenizer)},
            training={"steps": state.step, "batch_size": recipe.batch_size, "seq_len": recipe.seq_len,
                      "tokens": state.tokens, "wall_s": state.wall_s, "final_loss": sum(tail) / len(tail),
                      "lr": recipe.lr, "seed": recipe.seed},
            evaluation=evaluation, hardware=state.hardware,
        )
        replace_dir(staging, final)
        written.append(final)
        console.print(f"Saved {final}")
    if len(params) == 2:
        a, b = params.values()
        gap = abs(a - b) / max(a, b)
        console.print(f"Parameter counts differ by {100 * gap:.1f} %.")
    return written
