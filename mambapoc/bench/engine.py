"""The compare engine: plans cells, runs each model in its own worker process, writes every finished
cell at once, and turns timeouts and dead workers into result cells instead of hanging or crashing."""

from __future__ import annotations

import json
import multiprocessing as mp
import queue as queue_mod
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from mambapoc.bench import cost
from mambapoc.bench.config import CompareConfig
from mambapoc.bench.display import Silent
from mambapoc.bench.plan import Planned, model_runs, plan
from mambapoc.errors import UserError
from mambapoc.fsutil import write_atomic
from mambapoc.results import Cell, ResultStore, read_cells

# How long a worker may take to import torch and load its model before it counts as failed.
LOAD_TIMEOUT_S = 900.0
POLL_S = 0.2
SAMPLE_RECORDS = 5


def prepare_run_dir(run_dir: Path, cfg: CompareConfig, resume: bool) -> CompareConfig:
    """Create the run dir, or on --resume reload its config so the rest of the run matches the start."""
    cfg_path = run_dir / "config.yaml"
    if resume:
        if not cfg_path.is_file():
            raise UserError(f"--resume: {run_dir} has no config.yaml (was it a compare run directory?)")
        saved = yaml.safe_load(cfg_path.read_text())["compare"]
        return CompareConfig.from_dict(saved, where=f"{cfg_path}: compare")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def write_run_files(run_dir: Path, cfg: CompareConfig, device: str, dtype: str, dataset_dir: Path,
                    pricing: dict, workload: dict) -> None:
    from mambapoc import envinfo
    from mambapoc.ingest.dataset import load_records, read_manifest

    config = {
        "compare": cfg.to_dict(),
        "device": device, "dtype": dtype,
        "dataset": {"name": dataset_dir.name, "path": str(dataset_dir)},
        "pricing": pricing, "workload": workload,
        "models": cfg.models, "lengths": cfg.lengths, "tasks": [t.key for t in cfg.tasks],
        "batch_size": cfg.batch_size, "repeats": cfg.repeats, "warmup": cfg.warmup,
        "min_time_s": cfg.min_time_s, "new_tokens": cfg.new_tokens, "seed": cfg.seed,
    }
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    env = envinfo.collect()
    env["seed"] = cfg.seed
    write_atomic(run_dir / "env.json", json.dumps(env, indent=2))
    # A few records travel with the run so its report can show what the models read, on any machine.
    manifest = {**read_manifest(dataset_dir), "samples": load_records(dataset_dir, limit=SAMPLE_RECORDS)}
    write_atomic(run_dir / "dataset.yaml", yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))


def device_name(device: str) -> str:
    import torch

    from mambapoc.envinfo import cpu_model

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu: {cpu_model()}"


class Runner:
    """Runs the planned cells of one (spec, impl) in worker processes, restarting after a failure."""

    def __init__(self, cfg: CompareConfig, run_dir: Path, dataset_dir: Path, device: str, dtype: str,
                 pricing: dict, display):
        self.cfg = cfg
        self.store = ResultStore(run_dir)
        self.dataset_dir = dataset_dir
        self.device = device
        self.dtype = dtype
        self.pricing = pricing
        self.display = display
        self.worker_cfg = {**cfg.to_dict(), "device": device, "dtype": dtype}
        self.models_info: dict[str, dict] = {}
        self.ctx = mp.get_context("spawn")

    def run_model(self, spec: str, impl: str, cells: list[Planned]) -> None:
        from mambapoc.bench import worker

        while cells:
            q = self.ctx.Queue()
            proc = self.ctx.Process(
                target=worker.main, args=(spec, impl, self.worker_cfg, cells, str(self.dataset_dir), q),
                daemon=True,
            )
            proc.start()
            try:
                cells = self._drive(proc, q, cells)
            finally:
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=10)

    def _drive(self, proc, q, cells: list[Planned]) -> list[Planned]:
        """Follow one worker until it finishes or fails; return the cells still to run."""
        by_id = {c.cell_id: c for c in cells}
        remaining = list(cells)
        info: dict | None = None
        current: str | None = None
        started = time.monotonic()
        started_at = None
        while remaining:
            try:
                kind, payload = q.get(timeout=POLL_S)
            except queue_mod.Empty:
                elapsed = time.monotonic() - started
                if current is not None and elapsed > self.cfg.cell_timeout_s:
                    proc.kill()
                    self._finish(by_id[current], info, {
                        "status": "timeout",
                        "error": f"cell exceeded --cell-timeout {self.cfg.cell_timeout_s:g} s",
                        "wall_s": elapsed, "started_at": started_at,
                    })
                    return [c for c in remaining if c.cell_id != current]
                if current is None and elapsed > LOAD_TIMEOUT_S:
                    proc.kill()
                    return self._fail_all(remaining, info, f"model did not load within {LOAD_TIMEOUT_S:g} s")
                if not proc.is_alive():
                    code = proc.exitcode
                    why = ("killed by the OS (SIGKILL), most likely out of host memory" if code == -9
                           else f"worker exited with code {code}")
                    if current is None:
                        return self._fail_all(remaining, info, why)
                    status = "oom" if code == -9 else "error"
                    self._finish(by_id[current], info, {"status": status, "error": why, "started_at": started_at,
                                                         "wall_s": time.monotonic() - started})
                    return [c for c in remaining if c.cell_id != current]
                continue
            if kind == "fatal":
                return self._fail_all(remaining, info, payload)
            if kind == "ready":
                info = payload
                self.models_info[cells[0].key] = payload
            elif kind == "start":
                current = payload
                started = time.monotonic()
                started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
                self.display.cell_started(by_id[current])
            elif kind == "cell":
                cell_id, measured = payload
                self._finish(by_id[cell_id], info, {**measured, "wall_s": time.monotonic() - started,
                                                    "started_at": started_at})
                remaining = [c for c in remaining if c.cell_id != cell_id]
                current = None
        return []

    def _fail_all(self, cells: list[Planned], info: dict | None, why: str) -> list[Planned]:
        for c in cells:
            self._finish(c, info, {"status": "error", "error": why})
        return []

    def _finish(self, planned: Planned, info: dict | None, measured: dict) -> None:
        from mambapoc.models.registry import short_name

        info = info or {}
        cell = Cell.from_json({
            "model": planned.model,
            "impl": planned.impl,
            "cross_check": planned.cross_check,
            "model_name": short_name(planned.model) + (" (hf)" if planned.cross_check else ""),
            "family": info.get("family"),
            "params": info.get("params"),
            "trained_length": info.get("trained_length"),
            "task": planned.task.name,
            "task_options": planned.task.options,
            "task_key": planned.task.key,
            "length_tokens": planned.length_tokens,
            "batch_size": self.cfg.batch_size,
            "dtype": self.dtype,
            "device": self.device,
            "device_name": self.pricing["device_name"],
            "torch_threads": info.get("torch_threads"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **measured,
        }, strict=True)
        if cell.ok:
            cell = cell.replace(**cost.cell_costs(cell, self.pricing["price_per_hour_usd"]))
        self.store.append(cell)
        self.display.cell_finished(cell)


def write_models(run_dir: Path, models_info: dict[str, dict]) -> None:
    """models.json keeps every model's facts, including those of earlier (resumed) parts of the run."""
    path = run_dir / "models.json"
    known = {m["key"]: m for m in json.loads(path.read_text())} if path.is_file() else {}
    for key, info in models_info.items():
        known[key] = {"key": key, **{k: info[k] for k in
                                     ("spec", "name", "family", "impl", "params", "trained_length", "description")}}
    write_atomic(path, json.dumps(list(known.values()), indent=2))


def run_compare(cfg: CompareConfig, run_dir: Path, resume: bool, display=None) -> list[Cell]:
    """Run (or continue) a comparison into `run_dir`; returns all cells of the run.

    A KeyboardInterrupt propagates after the worker is stopped: every finished cell is already on
    disk, and the caller tells the user how to resume.
    """
    from mambapoc.ingest.dataset import resolve_dataset

    run_dir = Path(run_dir)
    cfg = prepare_run_dir(run_dir, cfg, resume)
    dataset_dir = resolve_dataset(cfg.dataset, Path(cfg.data_dir) if cfg.data_dir else None)
    device = cfg.resolved_device()
    dtype = cfg.resolved_dtype(device)
    pricing = cost.price_for(device_name(device), cfg.pricing_file, cfg.price_per_hour_usd)
    workload = {"requests_per_day": cfg.requests_per_day,
                "length_tokens": cfg.workload_length or max(cfg.lengths), "new_tokens": cfg.new_tokens}
    the_plan = plan(cfg)
    if not resume:
        write_run_files(run_dir, cfg, device, dtype, dataset_dir, pricing, workload)
    the_plan.done = read_cells(run_dir).ids()
    display = display or Silent()
    runner = Runner(cfg, run_dir, dataset_dir, device, dtype, pricing, display)
    display.start(the_plan)
    try:
        for spec, impl in model_runs(cfg):
            todo = the_plan.todo(spec, impl)
            if todo:
                runner.run_model(spec, impl, todo)
    finally:
        write_models(run_dir, runner.models_info)
        display.stop()
    return read_cells(run_dir).cells
