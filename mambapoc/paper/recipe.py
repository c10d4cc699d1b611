"""Recipes of kind `paper-icl`: task, curriculum, models, training, evaluation and probing settings.

Relative paths are relative to the recipe file. Every field is checked before anything runs, and an
error names it (`recipe R: train.steps: expected an integer >= 1`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mambapoc.errors import UserError
from mambapoc.paper.functions import INPUTS, SHIFTS, TASKS, Task
from mambapoc.paper.train import Curriculum, Schedule
from mambapoc.schema import Fields, read_yaml

KIND = "paper-icl"
TOP = ("kind", "name", "description", "seed", "task", "curriculum", "models", "train", "device", "threads",
       "eval", "probe", "weights", "retrain")
TASK = ("function", "n_dims", "inputs", "sparsity", "hidden_units", "depth")
CURRICULUM = ("dims", "points", "interval")
RAMP = ("start", "end", "inc")
TRAIN = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "checkpoint_every")
EVAL = ("prompts", "points", "batch_size", "shifts")
PROBE = ("prompts", "fit_positions")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class PaperRecipe:
    path: Path
    name: str
    description: str
    seed: int
    task: Task
    curriculum: Curriculum
    models: dict[str, dict]  # display name -> {"family": ..., settings}
    schedule: Schedule
    device: str
    threads: int | None
    eval_prompts: int
    eval_points: int
    eval_batch_size: int
    shifts: list[str]
    probe_prompts: int
    fit_positions: int
    weights: Path | None  # trained weights to evaluate instead of training
    retrain: bool

    @property
    def train_points(self) -> int:
        return self.curriculum.points[1]

    def training_settings(self) -> dict:
        """Everything the trained weights depend on, as saved beside them; in JSON's types (lists, not
        tuples), so that saved and current settings compare equal."""
        return json.loads(json.dumps({"seed": self.seed, "task": asdict(self.task),
                                      "curriculum": asdict(self.curriculum), "models": self.models,
                                      "train": asdict(self.schedule)}))


def is_paper_recipe(path: Path) -> bool:
    """Whether `path` is a readable YAML mapping of this kind; anything else is left to the default
    recipe loader, which reports what is wrong."""
    try:
        raw = read_yaml(path)
    except UserError:
        return False
    return raw.get("kind") == KIND


def _task(top: Fields) -> Task:
    sec = top.section("task", TASK, required=True)
    task = Task(name=sec.choice("function", TASKS),
                n_dims=sec.integer("n_dims", minimum=1),
                inputs=sec.choice("inputs", INPUTS, "gaussian"),
                sparsity=sec.integer("sparsity", 3, minimum=1),
                hidden_units=sec.integer("hidden_units", 100, minimum=1),
                depth=sec.integer("depth", 4, minimum=1, maximum=12))
    if task.name == "sparse" and task.sparsity > task.n_dims:
        raise sec.error("sparsity", f"{task.sparsity} is more than n_dims ({task.n_dims})")
    return task


def _curriculum(top: Fields, task: Task) -> Curriculum:
    sec = top.section("curriculum", CURRICULUM, required=True)
    ramps = []
    for key, end_must_be in (("dims", task.n_dims), ("points", None)):
        ramp = sec.section(key, RAMP, required=True)
        start = ramp.integer("start", minimum=1)
        end = ramp.integer("end", minimum=start)
        if end_must_be is not None and end != end_must_be:
            raise ramp.error("end", f"must equal task.n_dims ({end_must_be}), got {end}")
        ramps.append((start, end, ramp.integer("inc", 1, minimum=1)))
    return Curriculum(ramps[0], ramps[1], sec.integer("interval", minimum=1))


def _models(top: Fields) -> dict[str, dict]:
    from mambapoc.paper.models import FAMILY_SETTINGS

    listed = top.value("models")
    if not isinstance(listed, dict) or not listed:
        raise top.error("models", "expected a mapping of names to model settings")
    models = {}
    for name, spec in listed.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            raise top.error(f"models.{name}", "a model name must be letters, digits, '.', '_' or '-' (it names a "
                                              "directory)")
        family = spec.get("family") if isinstance(spec, dict) else None
        if family not in FAMILY_SETTINGS:
            raise top.error(f"models.{name}.family", f"expected one of {', '.join(FAMILY_SETTINGS)}, got {family!r}")
        settings = {k: v for k, v in spec.items() if k != "family"}
        for k in settings:
            if k not in FAMILY_SETTINGS[family]:
                raise top.error(f"models.{name}.{k}",
                                f"unknown {family} setting (known: {', '.join(FAMILY_SETTINGS[family])})")
        fields = Fields(settings, FAMILY_SETTINGS[family], top.file, f"models.{name}")
        models[str(name)] = {"family": family, **{k: fields.integer(k, minimum=1) for k in settings}}
    return models


def _schedule(top: Fields) -> Schedule:
    sec = top.section("train", TRAIN, required=True)
    return Schedule(steps=sec.integer("steps", minimum=1),
                    batch_size=sec.integer("batch_size", 64, minimum=1),
                    lr=sec.number("lr", minimum=0),
                    warmup_steps=sec.integer("warmup_steps", 0, minimum=0),
                    weight_decay=sec.number("weight_decay", 0.0, minimum=0),
                    grad_clip=sec.number("grad_clip", 1.0, minimum=0),
                    checkpoint_every=sec.integer("checkpoint_every", 1000, minimum=1))


def load_paper_recipe(path: Path, overrides: Sequence[str] = ()) -> PaperRecipe:
    path = Path(path)
    top = Fields.of_file(path, TOP, overrides)
    if top.value("kind", None) != KIND:
        raise UserError(f"recipe {path}: not a recipe of kind {KIND}")
    task = _task(top)
    curriculum = _curriculum(top, task)
    ev = top.section("eval", EVAL)
    pr = top.section("probe", PROBE)
    train_points = curriculum.points[1]
    shifts = ev.strings("shifts", list(SHIFTS))
    for s in shifts:
        if s not in SHIFTS:
            raise ev.error("shifts", f"expected one of {', '.join(SHIFTS)}, got {s!r}")
    if "standard" not in shifts:
        raise ev.error("shifts", "must include standard (the training distribution)")
    weights = top.text("weights", None)
    return PaperRecipe(
        path=path,
        name=top.text("name", path.stem),
        description=top.text("description", ""),
        seed=top.integer("seed", 0, minimum=0),
        task=task,
        curriculum=curriculum,
        models=_models(top),
        schedule=_schedule(top),
        device=top.choice("device", DEVICES, "auto"),
        threads=top.integer("threads", None, minimum=1),
        eval_prompts=ev.integer("prompts", 1280, minimum=2),
        eval_points=ev.integer("points", 3 * train_points, minimum=train_points),
        eval_batch_size=ev.integer("batch_size", 256, minimum=1),
        shifts=shifts,
        probe_prompts=pr.integer("prompts", 1280, minimum=2),
        fit_positions=pr.integer("fit_positions", 10, minimum=2, maximum=train_points - 1),
        weights=None if weights is None else path.parent / weights,
        retrain=top.boolean("retrain", False),
    )
