"""What a report covers beyond one run as measured: another workload or price (re-rendered without
measuring again), and several runs of one dataset side by side (CPU and GPU, two model pairs)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from mambapoc.errors import UserError
from mambapoc.report.load import Run, load_run


@dataclasses.dataclass(frozen=True)
class Workload:
    """Overrides of the run's workload and price; None keeps the run's own."""

    requests_per_day: int | None = None
    length_tokens: int | None = None
    new_tokens: int | None = None
    price_per_hour: float | None = None

    def check(self) -> None:
        for name in ("requests_per_day", "length_tokens", "new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-').replace('-tokens', '')}: must be at least 1")
        if self.price_per_hour is not None and not 0 < self.price_per_hour < math.inf:
            raise UserError(f"--price-per-hour: must be a positive number of dollars, not {self.price_per_hour}")


def with_workload(run: Run, w: Workload) -> Run:
    """The run as if it had been measured for workload `w`: the workload in its config, and at a new price
    every cell's cost recomputed from its measured throughput. Nothing measured changes."""
    w.check()
    config = dict(run.config)
    workload = dict(config.get("workload") or {})
    for key in ("requests_per_day", "length_tokens", "new_tokens"):
        if getattr(w, key) is not None:
            workload[key] = getattr(w, key)
    config["workload"] = workload
    if w.price_per_hour is None:
        return dataclasses.replace(run, config=config)
    config["pricing"] = {**(config.get("pricing") or {}), "price_per_hour_usd": w.price_per_hour,
                         "source": "--price-per-hour given to mambapoc report"}
    return dataclasses.replace(run, config=config, cells=_repriced(run.cells, w.price_per_hour),
                               serving=_repriced(run.serving, w.price_per_hour))


def _repriced(cells, price: float) -> list:
    return [c.priced(price) if c.ok else c for c in cells]


def _dataset_id(run: Run) -> str:
    ds = run.dataset or {}
    return str(ds.get("fingerprint") or ds.get("name") or (run.config.get("dataset") or {}).get("name") or "?")


def _label(run: Run, others: list[Run]) -> str:
    """What tells this run's models from the other runs' in a merged report: the device, else the run."""
    def device(r: Run) -> str:
        names = sorted({c.device_name or c.device or "?" for c in r.cells})
        return ", ".join(n.split(":")[0] if n.startswith("cpu") else n for n in names)

    mine = device(run)
    return mine if sum(device(r) == mine for r in others) == 1 else run.path.name


def merge(runs: list[Run]) -> Run:
    """One report over several runs of the same dataset; a model measured in two runs appears twice,
    labelled with what differs (the device, else the run directory)."""
    if len(runs) == 1:
        return runs[0]
    first = _dataset_id(runs[0])
    for r in runs[1:]:
        if _dataset_id(r) != first:
            raise UserError(f"{runs[0].path} and {r.path} measured different datasets ({first} and "
                            f"{_dataset_id(r)}): a merged report compares runs of one dataset")
    cells, serving, models = [], [], []
    for r in runs:
        label = _label(r, runs)
        cells += [c.replace(model=f"{c.model} [{label}]", model_name=f"{r.model_name(c)} ({label})") for c in r.cells]
        serving += [c.replace(model=f"{c.model} [{label}]", model_name=f"{r.model_name(c)} ({label})")
                    for c in r.serving]
        models += [dataclasses.replace(m, key=_relabel(m.key, label), name=f"{m.name} ({label})") for m in r.models]
    base = runs[0]
    return dataclasses.replace(base, cells=cells, serving=serving, models=models,
                               unreadable_lines=sum(r.unreadable_lines for r in runs),
                               merged=tuple(dict.fromkeys(r.path for r in runs)))


def _relabel(key: str, label: str) -> str:
    # A key is SPEC or SPEC@hf (see results.model_key): the label goes on the spec, as on the cells'.
    spec, at, impl = key.partition("@hf")
    return f"{spec} [{label}]{at}{impl}"


def by_device_type(run: Run) -> list[Run]:
    """A run whose cells were measured on unlike devices (resumed on another machine, a mixed pool) as one
    run per device type, so that the report never compares them as if they were one hardware."""
    def kind(cell) -> str:
        return cell.device_name or cell.device or "?"

    kinds = sorted({kind(c) for c in run.all_cells})
    if len(kinds) < 2:
        return [run]
    parts = []
    for k in kinds:
        cells, serving = [c for c in run.cells if kind(c) == k], [c for c in run.serving if kind(c) == k]
        keys = {c.key for c in (*cells, *serving)}
        parts.append(dataclasses.replace(run, cells=cells, serving=serving,
                                         models=[m for m in run.models if m.key in keys]))
    return parts


def load(run_dirs: list[Path], workload: Workload | None = None) -> Run:
    run = merge([part for d in run_dirs for part in by_device_type(load_run(Path(d)))])
    return with_workload(run, workload) if workload is not None else run

