"""Recipes of kind `paper-icl`: task, curriculum, models, training, evaluation and probing settings.

Relative paths are relative to the recipe file. Every field is checked before anything runs, and an
error names it (`recipe R: train.steps: expected an integer >= 1`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mambapoc.errors import UserError
from mambapoc.paper.functions import INPUTS, SHIFTS, TASKS, Task
from mambapoc.paper.train import Curriculum, Schedule

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
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND


def _section(raw: dict, key: str, allowed: tuple, where: str, required: bool = True) -> dict:
    sec = raw.get(key)
    if sec is None and not required:
        return {}
    if not isinstance(sec, dict):
        raise UserError(f"{where}: {key}: expected a mapping with {', '.join(allowed)}")
    for k in sec:
        if k not in allowed:
            raise UserError(f"{where}: {key}.{k}: unknown setting (known: {', '.join(allowed)})")
    return sec


def _number(value, where: str, kind: type, minimum: float, maximum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise UserError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise UserError(f"{where}: expected a value {bound}, got {value}")
    return kind(value)


def _required(sec: dict, key: str, where: str):
    if key not in sec:
        raise UserError(f"{where}.{key} is required")
    return sec[key]


def _choice(value, choices: tuple, where: str) -> str:
    if value not in choices:
        raise UserError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _task(raw: dict, where: str) -> Task:
    sec = _section(raw, "task", TASK, where)
    w = f"{where}: task"
    task = Task(name=_choice(_required(sec, "function", w), TASKS, f"{w}.function"),
                n_dims=_number(_required(sec, "n_dims", w), f"{w}.n_dims", int, 1),
                inputs=_choice(sec.get("inputs", "gaussian"), INPUTS, f"{w}.inputs"),
                sparsity=_number(sec.get("sparsity", 3), f"{w}.sparsity", int, 1),
                hidden_units=_number(sec.get("hidden_units", 100), f"{w}.hidden_units", int, 1),
                depth=_number(sec.get("depth", 4), f"{w}.depth", int, 1, 12))
    if task.name == "sparse" and task.sparsity > task.n_dims:
        raise UserError(f"{w}.sparsity: {task.sparsity} is more than n_dims ({task.n_dims})")
    return task


def _curriculum(raw: dict, task: Task, where: str) -> Curriculum:
    sec = _section(raw, "curriculum", CURRICULUM, where)
    ramps = []
    for key, top in (("dims", task.n_dims), ("points", None)):
        ramp = _section(sec, key, RAMP, f"{where}: curriculum")
        w = f"{where}: curriculum.{key}"
        start = _number(_required(ramp, "start", w), f"{w}.start", int, 1)
        end = _number(_required(ramp, "end", w), f"{w}.end", int, start)
        inc = _number(ramp.get("inc", 1), f"{w}.inc", int, 1)
        if top is not None and end != top:
            raise UserError(f"{w}.end: must equal task.n_dims ({top}), got {end}")
        ramps.append((start, end, inc))
    return Curriculum(ramps[0], ramps[1], _number(_required(sec, "interval", f"{where}: curriculum"),
                                                  f"{where}: curriculum.interval", int, 1))


def _models(raw: dict, where: str) -> dict[str, dict]:
    from mambapoc.paper.models import FAMILY_SETTINGS

    sec = raw.get("models")
    if not isinstance(sec, dict) or not sec:
        raise UserError(f"{where}: models: expected a mapping of names to model settings")
    models = {}
    for name, spec in sec.items():
        w = f"{where}: models.{name}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
            raise UserError(f"{w}: a model name must be letters, digits, '.', '_' or '-' (it names a directory)")
        if not isinstance(spec, dict):
            raise UserError(f"{w}: expected a mapping with family and settings")
        family = _choice(spec.get("family"), tuple(FAMILY_SETTINGS), f"{w}.family")
        settings = {k: v for k, v in spec.items() if k != "family"}
        for k, v in settings.items():
            if k not in FAMILY_SETTINGS[family]:
                raise UserError(f"{w}.{k}: unknown {family} setting (known: {', '.join(FAMILY_SETTINGS[family])})")
            _number(v, f"{w}.{k}", int, 1)
        models[str(name)] = {"family": family, **settings}
    return models


def _schedule(raw: dict, where: str) -> Schedule:
    sec = _section(raw, "train", TRAIN, where)
    w = f"{where}: train"
    steps = _number(_required(sec, "steps", w), f"{w}.steps", int, 1)
    return Schedule(steps=steps,
                    batch_size=_number(sec.get("batch_size", 64), f"{w}.batch_size", int, 1),
                    lr=_number(_required(sec, "lr", w), f"{w}.lr", float, 0),
                    warmup_steps=_number(sec.get("warmup_steps", 0), f"{w}.warmup_steps", int, 0),
                    weight_decay=_number(sec.get("weight_decay", 0.0), f"{w}.weight_decay", float, 0),
                    grad_clip=_number(sec.get("grad_clip", 1.0), f"{w}.grad_clip", float, 0),
                    checkpoint_every=_number(sec.get("checkpoint_every", 1000), f"{w}.checkpoint_every", int, 1))


def load_paper_recipe(path: Path) -> PaperRecipe:
    path = Path(path)
    where = f"recipe {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{where}: cannot be read as YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise UserError(f"{where}: not a recipe of kind {KIND}")
    for key in raw:
        if key not in TOP:
            raise UserError(f"{where}: unknown section {key!r} (known: {', '.join(TOP)})")
    task = _task(raw, where)
    curriculum = _curriculum(raw, task, where)
    ev = _section(raw, "eval", EVAL, where, required=False)
    pr = _section(raw, "probe", PROBE, where, required=False)
    train_points = curriculum.points[1]
    shifts = ev.get("shifts", list(SHIFTS))
    if not isinstance(shifts, list) or not shifts:
        raise UserError(f"{where}: eval.shifts: expected a list of {', '.join(SHIFTS)}")
    for s in shifts:
        _choice(s, tuple(SHIFTS), f"{where}: eval.shifts")
    if "standard" not in shifts:
        raise UserError(f"{where}: eval.shifts must include standard (the training distribution)")
    threads = raw.get("threads")
    weights = raw.get("weights")
    retrain = raw.get("retrain", False)
    if not isinstance(retrain, bool):
        raise UserError(f"{where}: retrain: expected true or false, got {retrain!r}")
    return PaperRecipe(
        path=path,
        name=str(raw.get("name") or path.stem),
        description=str(raw.get("description", "")),
        seed=_number(raw.get("seed", 0), f"{where}: seed", int, 0),
        task=task,
        curriculum=curriculum,
        models=_models(raw, where),
        schedule=_schedule(raw, where),
        device=_choice(raw.get("device", "auto"), DEVICES, f"{where}: device"),
        threads=None if threads is None else _number(threads, f"{where}: threads", int, 1),
        eval_prompts=_number(ev.get("prompts", 1280), f"{where}: eval.prompts", int, 2),
        eval_points=_number(ev.get("points", 3 * train_points), f"{where}: eval.points", int, train_points),
        eval_batch_size=_number(ev.get("batch_size", 256), f"{where}: eval.batch_size", int, 1),
        shifts=shifts,
        probe_prompts=_number(pr.get("prompts", 1280), f"{where}: probe.prompts", int, 2),
        fit_positions=_number(pr.get("fit_positions", 10), f"{where}: probe.fit_positions", int, 2,
                              train_points - 1),
        weights=None if weights is None else path.parent / str(weights),
        retrain=retrain,
    )
