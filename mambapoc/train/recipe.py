"""Training recipes (`mambapoc train RECIPE.yaml`): data, tokenizer, models, schedule, evaluation.

Relative paths are relative to the recipe file. Every field is checked up front; errors name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mambapoc.schema import Fields
from mambapoc.tasks.spec import TaskSpec, parse_length, parse_lengths, parse_tasks

TOP = ("name", "description", "seed", "data", "tokenizer", "models", "train", "eval", "out")
DATA = ("paths", "label_field", "text_field", "holdout_fraction", "seq_len", "mixture", "answer_weight")
TRAIN = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "checkpoint_every", "threads",
         "device", "workers")
EVAL = ("lengths", "instances", "tasks")
MIXTURE = ("lm", "fewshot", "needle", "copy")
FAMILIES = ("mamba", "mamba2", "llama")
DEVICES = ("auto", "cpu", "cuda")


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
    eval_tasks: list[TaskSpec] = field(default_factory=list)
    out: Path = Path("models")


def load_train_recipe(path: Path, overrides: Sequence[str] = ()) -> TrainRecipe:
    path = Path(path)
    top = Fields.of_file(path, TOP, overrides)
    data = top.section("data", DATA)
    train = top.section("train", TRAIN)
    ev = top.section("eval", EVAL)
    tok = top.section("tokenizer", ("vocab_size",))
    if not data.value("paths", []):
        raise data.error("paths", "list the logs and documents to train on")
    mix = data.section("mixture", MIXTURE) if "mixture" in data else Fields({"lm": 1.0}, MIXTURE, top.file)
    mixture = {k: mix.number(k, minimum=0) for k in mix.data}
    if sum(mixture.values()) <= 0:
        raise top.error("data.mixture", "the weights must add up to more than 0")
    models = top.value("models", {})
    if not isinstance(models, dict) or not models:
        raise top.error("models", "name at least one model, e.g. mamba-tiny: {family: mamba, ...}")
    for name, spec in models.items():
        if not isinstance(spec, dict) or spec.get("family") not in FAMILIES:
            raise top.error(f"models.{name}.family", f"one of {', '.join(FAMILIES)}")
    seq_len = data.parsed("seq_len", parse_length, 512)
    return TrainRecipe(
        path=path,
        name=top.text("name", path.stem),
        description=top.text("description", ""),
        seed=top.integer("seed", 0, minimum=0),
        paths=data.paths("paths"),
        label_field=data.text("label_field", None),
        text_field=data.text("text_field", None),
        holdout_fraction=data.number("holdout_fraction", 0.2, minimum=0, maximum=0.9),
        seq_len=seq_len,
        mixture=mixture,
        answer_weight=data.number("answer_weight", 1.0, minimum=0),
        vocab_size=tok.integer("vocab_size", 4096, minimum=64),
        models=models,
        steps=train.integer("steps", 1000, minimum=1),
        batch_size=train.integer("batch_size", 8, minimum=1),
        lr=train.number("lr", 1e-3, minimum=0),
        warmup_steps=train.integer("warmup_steps", 100, minimum=0),
        weight_decay=train.number("weight_decay", 0.1, minimum=0),
        grad_clip=train.number("grad_clip", 1.0, minimum=0),
        checkpoint_every=train.integer("checkpoint_every", 100, minimum=1),
        threads=train.integer("threads", None, minimum=1),
        device=train.choice("device", DEVICES, "auto"),
        workers=train.integer("workers", 0, minimum=0),
        eval_lengths=ev.parsed("lengths", parse_lengths, [seq_len]),
        eval_instances=ev.integer("instances", 50, minimum=1),
        eval_tasks=ev.parsed("tasks", parse_tasks, ["fewshot-classify[symbol_labels=true]", "needle"]),
        out=(path.parent / top.text("out", "models")),
    )
