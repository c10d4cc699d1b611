"""Read a run directory into plain Python data: the cells, the models, the settings and the environment."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from mambapoc.errors import UserError
from mambapoc.ingest.dataset import RECORDS, load_records

_REQUIRED = ("model", "task", "length_tokens", "status")
_SAMPLE_COUNT = 5


@dataclass(frozen=True)
class Model:
    key: str  # the spec, with "@impl" when another implementation than ours ran it (see `model_key`)
    spec: str
    name: str
    family: str
    impl: str | None
    params: int | None
    trained_length: int | None
    description: str | None


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict
    env: dict
    models: list[Model]
    dataset: dict | None
    cells: list[dict]
    unreadable_lines: int
    samples: list[dict]

    def model_name(self, cell: dict) -> str:
        """The name of a cell's model as the report's model table shows it."""
        key = model_key(cell)
        return next((m.name for m in self.models if m.key == key), cell.get("model_name") or cell["model"])


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


def model_key(cell_or_model: dict) -> str:
    """Which model a cell or models.json entry is: one checkpoint run by two implementations (ours and
    transformers') is two models here, as in the run's cell ids."""
    spec, impl = cell_or_model["spec" if "spec" in cell_or_model else "model"], cell_or_model.get("impl")
    return spec if impl in (None, "ours") else f"{spec}@{impl}"


def variant(cell: dict) -> Variant:
    options = cell.get("task_options") or {}
    return Variant(cell["task"], tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in options.items())))


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    results = run_dir / "results.jsonl"
    if not results.is_file():
        raise UserError(f"{results} is missing: is {run_dir} a run directory written by `mambapoc compare`?")
    cells, unreadable = _read_cells(results)
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
        cells=cells,
        unreadable_lines=unreadable,
        samples=_samples(dataset, config),
    )


def _read_cells(path: Path) -> tuple[list[dict], int]:
    """Cells by id, the last write of an id winning. A line that does not parse is counted, not fatal: an
    interrupted run leaves a torn last line, and a resumed run appends after it."""
    by_id: dict[str, dict] = {}
    unreadable = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                cell = json.loads(line)
            except json.JSONDecodeError:
                unreadable += 1
                continue
            if not isinstance(cell, dict):
                unreadable += 1
                continue
            missing = [k for k in _REQUIRED if cell.get(k) is None]
            if missing:
                raise UserError(f"{path} line {number}: cell lacks {', '.join(missing)}")
            cell_id = cell.get("cell_id") or f"{cell['model']}|{cell['task']}|{cell['length_tokens']}|{number}"
            by_id[cell_id] = cell
    return list(by_id.values()), unreadable


def _read_yaml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from e
    return data if isinstance(data, dict) else None


def _models(path: Path, cells: list[dict]) -> list[Model]:
    """Models in the order the run listed them; models.json where present, else what the cells say."""
    listed = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    by_key = {model_key(m): m for m in listed if isinstance(m, dict) and m.get("spec")}
    first_cell: dict[str, dict] = {}
    for cell in cells:
        first_cell.setdefault(model_key(cell), cell)
        by_key.setdefault(model_key(cell), {"spec": cell["model"]})
    models = []
    for key, m in by_key.items():
        cell = first_cell.get(key, {})
        models.append(
            Model(
                key=key,
                spec=m["spec"],
                name=m.get("name") or cell.get("model_name") or m["spec"],
                family=m.get("family") or cell.get("family") or "unknown",
                impl=m.get("impl") or cell.get("impl"),
                params=m.get("params") or cell.get("params"),
                trained_length=m.get("trained_length") or cell.get("trained_length"),
                description=m.get("description"),
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
