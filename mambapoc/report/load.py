"""Read a run directory into plain Python data: the cells, the models, the settings and the environment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mambapoc.errors import UserError
from mambapoc.ingest.dataset import RECORDS, load_records
from mambapoc.results import RESULTS, Cell, read_cells

_SAMPLE_COUNT = 5
SERVING = "serving"  # the task of serving-capacity cells (bench.plan)


@dataclass(frozen=True)
class Model:
    key: str  # as in the cells: the spec, or SPEC@hf for transformers' run of a Mamba checkpoint
    spec: str
    name: str
    family: str
    impl: str | None
    params: int | None
    trained_length: int | None
    description: str | None
    footprint: dict | None = None  # serving memory from config.json (models.footprint), when recorded


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict
    env: dict
    models: list[Model]
    dataset: dict | None
    cells: list[Cell]
    unreadable_lines: int
    samples: list[dict]
    merged: tuple[Path, ...] = ()  # the run directories a merged report covers
    serving: list[Cell] = field(default_factory=list)  # serving-capacity cells; `cells` holds the task cells

    @property
    def all_cells(self) -> list[Cell]:
        return [*self.cells, *self.serving]

    def model_name(self, cell: Cell) -> str:
        """The name of a cell's model as the report's model table shows it."""
        return next((m.name for m in self.models if m.key == cell.key), cell.model_name or cell.model)


@dataclass(frozen=True, order=True)
class Variant:
    """A task with its options: the unit that accuracy is compared on across models and lengths."""

    task: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def noise_rate(self) -> float:
        return float(json.loads(dict(self.options).get("noise_rate", "0")) or 0.0)

    @property
    def clean(self) -> Variant:
        return Variant(self.task, tuple(kv for kv in self.options if kv[0] != "noise_rate"))


def variant(cell: Cell) -> Variant:
    options = cell.task_options
    return Variant(cell.task, tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in options.items())))


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    results = run_dir / RESULTS
    if not results.is_file():
        raise UserError(f"{results} is missing: is {run_dir} a run directory written by `mambapoc compare`?")
    found = read_cells(run_dir)
    cells, unreadable = found.cells, found.unreadable
    if not cells:
        raise UserError(f"{results} has no finished cells yet: nothing to report")
    config = _read_yaml(run_dir / "config.yaml") or {}
    dataset = _read_yaml(run_dir / "dataset.yaml")
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.is_file() else {}
    return Run(
        path=run_dir,
        config=config,
        env=env,
        models=_models(run_dir / "models.json", cells),
        dataset=dataset,
        cells=[c for c in cells if c.task != SERVING],
        unreadable_lines=unreadable,
        samples=_samples(dataset, config),
        serving=[c for c in cells if c.task == SERVING],
    )


def _read_yaml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from e
    return data if isinstance(data, dict) else None


def _models(path: Path, cells: list[Cell]) -> list[Model]:
    """Models in the order the run listed them; models.json where present, else what the cells say."""
    listed = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    by_key = {m.get("key") or m["spec"]: m for m in listed if isinstance(m, dict) and m.get("spec")}
    first_cell: dict[str, Cell] = {}
    for cell in cells:
        first_cell.setdefault(cell.key, cell)
        by_key.setdefault(cell.key, {"spec": cell.model})
    models = []
    for key, m in by_key.items():
        cell = first_cell.get(key)
        models.append(
            Model(
                key=key,
                spec=m["spec"],
                name=m.get("name") or (cell and cell.model_name) or m["spec"],
                family=m.get("family") or (cell and cell.family) or "unknown",
                impl=m.get("impl") or (cell and cell.impl),
                params=m.get("params") or (cell and cell.params),
                trained_length=m.get("trained_length") or (cell and cell.trained_length),
                description=m.get("description"),
                footprint=m.get("footprint"),
            )
        )
    return models


def _samples(dataset: dict | None, config: dict) -> list[dict]:
    """A few dataset records to show what the models read: the `samples` stored with the run, else the
    first records of the dataset when it is on this disk (its path as the run recorded it)."""
    listed = (dataset or {}).get("samples")
    if isinstance(listed, list) and listed:
        return [s if isinstance(s, dict) else {"text": str(s)} for s in listed[:_SAMPLE_COUNT]]
    ds_path = (config.get("dataset") or {}).get("path")
    if not ds_path or not (Path(ds_path) / RECORDS).is_file():
        return []
    return load_records(Path(ds_path), limit=_SAMPLE_COUNT)
