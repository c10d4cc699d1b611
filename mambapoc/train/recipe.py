"""Training recipes (`mambapoc train RECIPE.yaml`): data, tokenizer, models, schedule, evaluation.

Relative paths are relative to the recipe file. Every field is checked up front; errors name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mambapoc.errors import UserError
from mambapoc.tasks.spec import parse_length

TOP = ("name", "description", "seed", "data", "tokenizer", "models", "train", "eval", "out")
DATA = ("paths", "label_field", "text_field", "holdout_fraction", "seq_len", "mixture", "answer_weight")
TRAIN = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "checkpoint_every", "threads",
         "device", "workers")
EVAL = ("lengths", "instances", "tasks")
MIXTURE = ("lm", "fewshot", "needle", "copy")
FAMILIES = ("mamba", "llama")


@dataclass
class TrainRecipe:
    path: Path
    name: str
    description: str
    seed: int
    paths: list[Path]
    label_field: str | None
    text_field: str | None
    holdout_fraction: float
    seq_len: int
    mixture: dict[str, float]
    answer_weight: float
    vocab_size: int
    models: dict[str, dict]
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    checkpoint_every: int
    threads: int | None
    device: str
    workers: int
    eval_lengths: list[int]
    eval_instances: int
    eval_tasks: list[str] = field(default_factory=list)
    out: Path = Path("models")


def _section(raw: dict, key: str, allowed: tuple, where: str) -> dict:
    sec = raw.get(key) or {}
    if not isinstance(sec, dict):
        raise UserError(f"{where}: {key}: expected a mapping")
    for k in sec:
        if k not in allowed:
            raise UserError(f"{where}: {key}.{k}: unknown setting (known: {', '.join(allowed)})")
    return sec


def load_train_recipe(path: Path) -> TrainRecipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise UserError(f"recipe {path} is not valid YAML") from None
    where = f"recipe {path}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping")
    for k in raw:
        if k not in TOP:
            raise UserError(f"{where}: unknown section {k!r} (known: {', '.join(TOP)})")
    base = path.parent
    data = _section(raw, "data", DATA, where)
    train = _section(raw, "train", TRAIN, where)
    ev = _section(raw, "eval", EVAL, where)
    tok = _section(raw, "tokenizer", ("vocab_size",), where)
    if not data.get("paths"):
        raise UserError(f"{where}: data.paths: list the logs and documents to train on")
    mixture = {k: float(v) for k, v in (data.get("mixture") or {"lm": 1.0}).items()}
    for k in mixture:
        if k not in MIXTURE:
            raise UserError(f"{where}: data.mixture.{k}: unknown part (known: {', '.join(MIXTURE)})")
    if sum(mixture.values()) <= 0:
        raise UserError(f"{where}: data.mixture: the weights must add up to more than 0")
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise UserError(f"{where}: models: name at least one model, e.g. mamba-tiny: {{family: mamba, ...}}")
    for name, spec in models.items():
        if not isinstance(spec, dict) or spec.get("family") not in FAMILIES:
            raise UserError(f"{where}: models.{name}.family: one of {', '.join(FAMILIES)}")
    seq_len = parse_length(data.get("seq_len", 512))
    try:
        recipe = TrainRecipe(
            path=path,
            name=str(raw.get("name") or path.stem),
            description=str(raw.get("description", "")),
            seed=int(raw.get("seed", 0)),
            paths=[base / p for p in data["paths"]],
            label_field=data.get("label_field"),
            text_field=data.get("text_field"),
            holdout_fraction=float(data.get("holdout_fraction", 0.2)),
            seq_len=seq_len,
            mixture=mixture,
            answer_weight=float(data.get("answer_weight", 1.0)),
            vocab_size=int(tok.get("vocab_size", 4096)),
            models=models,
            steps=int(train.get("steps", 1000)),
            batch_size=int(train.get("batch_size", 8)),
            lr=float(train.get("lr", 1e-3)),
            warmup_steps=int(train.get("warmup_steps", 100)),
            weight_decay=float(train.get("weight_decay", 0.1)),
            grad_clip=float(train.get("grad_clip", 1.0)),
            checkpoint_every=int(train.get("checkpoint_every", 100)),
            threads=train.get("threads"),
            device=str(train.get("device", "auto")),
            workers=int(train.get("workers", 0)),
            eval_lengths=[parse_length(x) for x in ev.get("lengths", [seq_len])],
            eval_instances=int(ev.get("instances", 50)),
            eval_tasks=list(ev.get("tasks", ["fewshot-classify[symbol_labels=true]", "needle"])),
            out=base / str(raw.get("out", "models")),
        )
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None
    if recipe.workers < 0:
        raise UserError(f"{where}: train.workers: 0 (make batches in the training process) or more")
    return recipe
