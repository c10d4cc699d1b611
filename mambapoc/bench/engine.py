"""The compare engine: checks a comparison whole, plans its cells, runs each model in its own worker
process, and writes every finished cell at once. One process at a time owns a run directory (a lock);
`--resume` finishes what is left, failed cells included, with the settings the run started with.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import yaml

from mambapoc.bench import cost
from mambapoc.bench.config import CompareConfig
from mambapoc.bench.display import Silent
from mambapoc.bench.plan import Plan, Planned, plan
from mambapoc.bench.runner import Limits, Worker
from mambapoc.errors import UserError
from mambapoc.fsutil import exclusive, write_atomic
from mambapoc.results import Cell, ResultStore, read_cells

SAMPLE_RECORDS = 5
LOCK = ".lock"
CONFIG = "config.yaml"
# Settings that decide which cells a run measures and what they mean: a resumed run keeps them.
PLAN_SETTINGS = ("models", "dataset", "lengths", "tasks", "device", "dtype", "batch_size", "new_tokens",
                 "instances", "seed", "mamba_impl", "threads", "pricing_file", "price_per_hour_usd",
                 "requests_per_day", "workload_length", "prefill_chunk", "kv_cache", "compile", "batch_sizes",
                 "memory_budget_bytes", "max_token_latency_s", "max_ttft_s", "max_batch")


def saved_config(run_dir: Path) -> dict:
    """The run's config.yaml, or a one-line error saying why it cannot be used."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"--resume: {run_dir} has no {CONFIG} (was it a compare run directory?)")
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UserError(f"--resume: {path} is not valid YAML; the run cannot be continued") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("compare"), dict):
        raise UserError(f"--resume: {path} has no compare settings; the run cannot be continued")
    return saved


def resumed_config(run_dir: Path, given: dict) -> CompareConfig:
    """The run's saved settings with `given` applied. Settings that only change how cells are measured
    (time limits, memory limit, repeats, stability) apply to the cells still to run; one that changes
    which cells there are or what they mean is refused, with the way out."""
    path = Path(run_dir) / CONFIG
    saved = CompareConfig.from_dict(saved_config(run_dir)["compare"], where=f"{path}: compare")
    wanted = CompareConfig.from_dict({**saved.to_dict(), **given}, where="option")
    changed = [k for k in PLAN_SETTINGS if getattr(wanted, k) != getattr(saved, k)]
    if changed:
        raise UserError(f"--resume cannot change {', '.join(changed)}: the run was started with other values "
                        f"(see {path}); start a new run with another --out")
    return wanted


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
    write_atomic(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))
    env = envinfo.collect()
    env["seed"] = cfg.seed
    write_atomic(run_dir / "env.json", json.dumps(env, indent=2))
    # A few records travel with the run so its report can show what the models read, on any machine.
    manifest = {**read_manifest(dataset_dir), "samples": load_records(dataset_dir, limit=SAMPLE_RECORDS)}
    write_atomic(run_dir / "dataset.yaml", yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))


def _record_resume(run_dir: Path, cfg: CompareConfig) -> None:
    """config.yaml takes the settings the rest of the run uses; each resume is listed with them."""
    saved = saved_config(run_dir)
    if saved["compare"] != cfg.to_dict():
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        changed = {k: v for k, v in cfg.to_dict().items() if saved["compare"].get(k) != v}
        saved["resumed"] = [*saved.get("resumed", []), {"at": at, "changed": changed}]
        saved["compare"] = cfg.to_dict()
        write_atomic(run_dir / CONFIG, yaml.safe_dump(saved, sort_keys=False))


def device_name(device: str) -> str:
    import torch

    from mambapoc.envinfo import cpu_model

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu: {cpu_model()}"


class Runner:
    """Runs planned cells in worker processes (one per model run) and records each as it ends."""

    def __init__(self, cfg: CompareConfig, run_dir: Path, dataset_dir: Path, device: str, dtype: str,
                 pricing: dict, display):
        self.cfg, self.device, self.dtype, self.pricing, self.display = cfg, device, dtype, pricing, display
        self.store = ResultStore(run_dir)
        self.dataset_dir = str(dataset_dir)
        self.worker_cfg = {**cfg.to_dict(), "device": device, "dtype": dtype}
        self.limits = Limits(cfg.cell_timeout_s, cfg.stall_timeout_s, cfg.memory_limit_bytes)
        self.models_info: dict[str, dict] = {}

    def run(self, cells: list[Planned]) -> None:
        """Model by model; or, with `interleave`, each (length, task) across all models before the next,
        every model in its own warm worker, so that drift on a shared machine hits them alike."""
        runs = list(dict.fromkeys((c.model, c.impl) for c in cells))
        if self.cfg.interleave:
            lengths, tasks = sorted({c.length_tokens for c in cells}), [t.key for t in self.cfg.tasks]
            cells = sorted(cells, key=lambda c: (lengths.index(c.length_tokens), tasks.index(c.task.key),
                                                 runs.index((c.model, c.impl))))
        workers: dict[tuple[str, str], Worker] = {}
        try:
            for cell in cells:
                run = (cell.model, cell.impl)
                if run not in workers:
                    if not self.cfg.interleave:
                        for w in workers.values():
                            w.stop()  # one model in memory at a time
                    workers[run] = Worker(*run, self.worker_cfg, self.dataset_dir, self.limits)
                worker = workers[run]
                failed = worker.start()
                if failed:
                    self._finish(cell, worker.info, {"status": "error", "error": failed})
                    continue
                self.models_info[cell.key] = worker.info
                self._finish(cell, worker.info, worker.run(cell, self.display.cell_started))
        finally:
            for w in workers.values():
                w.stop()

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
            "task": planned.task.name if planned.batch is None else "serving",
            "task_options": planned.task.options if planned.batch is None else {"batch": planned.batch,
                                                                               "prompt": planned.task.key},
            "task_key": planned.task_key,
            "length_tokens": planned.length_tokens,
            "batch_size": self.cfg.batch_size,
            "dtype": self.dtype,
            "device": self.device,
            "device_name": self.pricing["device_name"],
            "torch_threads": info.get("torch_threads"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **measured,
        }, strict=True)
        limit = self.cfg.memory_limit_bytes
        if cell.ok and limit and (cell.peak_rss_bytes or 0) > limit:
            # A peak between two of the watchdog's samples: the cell did not fit, whatever it measured.
            cell = cell.replace(status="oom", error=f"resident memory peaked {cell.peak_rss_bytes:,} bytes above "
                                                    f"the worker's idle memory, over --memory-limit {limit:,}")
        if cell.ok:
            cell = cell.priced(self.pricing["price_per_hour_usd"])
        self.store.append(cell)
        self.display.cell_finished(cell)


def write_models(run_dir: Path, models_info: dict[str, dict], footprints: dict[str, dict]) -> None:
    """models.json keeps every model's facts, including those of earlier (resumed) parts of the run, and
    its serving footprint computed from its config.json (see models/footprint.py)."""
    path = run_dir / "models.json"
    known = {m["key"]: m for m in json.loads(path.read_text())} if path.is_file() else {}
    for key, info in models_info.items():
        known[key] = {"key": key, **{k: info[k] for k in
                                     ("spec", "name", "family", "impl", "params", "trained_length", "description")}}
    for key, fp in footprints.items():
        if key in known:
            known[key]["footprint"] = fp
    write_atomic(path, json.dumps(list(known.values()), indent=2))


def _footprints(the_plan: Plan) -> dict[str, dict]:
    """Each model's serving footprint in bfloat16, the dtype deployments serve in, whatever this run used."""
    from mambapoc.models.registry import model_footprint

    specs = {c.key: c.model for c in the_plan.cells}
    return {key: model_footprint(spec, "bfloat16").to_json() for key, spec in specs.items()}


def _new_run_dir(run_dir: Path) -> bool:
    """Make the run directory; refuse one that holds anything. Returns whether it was created here."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file; give a directory for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    return created


def check(cfg: CompareConfig) -> tuple[Plan, str, str, dict]:
    """Everything about a comparison that can be checked without its dataset: the models resolve, the
    device exists, the device has a price. Returns the plan, device, dtype and pricing."""
    import torch

    the_plan = plan(cfg)
    device = cfg.resolved_device()
    dtype = cfg.resolved_dtype(device)
    # A worker computes with --threads, else torch's default, which is the same in every process here.
    threads = cfg.threads or torch.get_num_threads()
    pricing = cost.price_for(device_name(device), cfg.pricing_file, cfg.price_per_hour_usd, threads)
    return the_plan, device, dtype, pricing


def run_compare(cfg: CompareConfig, run_dir: Path, resume: bool = False, display=None,
                keep_failed: bool = False) -> list[Cell]:
    """Run (or, with `resume`, finish) a comparison in `run_dir`; returns all cells of the run. For a
    resumed run, `cfg` comes from `resumed_config`. Everything is checked (dataset, models, price) before
    the run directory is made. A resumed run measures again the cells that failed, unless `keep_failed`.

    A KeyboardInterrupt propagates after the worker is stopped: every finished cell is already on
    disk, and the caller tells the user how to resume.
    """
    from mambapoc.ingest.dataset import resolve_dataset

    run_dir = Path(run_dir)
    dataset_dir = resolve_dataset(cfg.dataset, Path(cfg.data_dir) if cfg.data_dir else None)
    the_plan, device, dtype, pricing = check(cfg)
    workload = {"requests_per_day": cfg.requests_per_day,
                "length_tokens": cfg.workload_length or max(cfg.lengths), "new_tokens": cfg.new_tokens}
    created = False if resume else _new_run_dir(run_dir)
    display = display or Silent()
    try:
        with exclusive(run_dir / LOCK, f"run directory {run_dir}"):
            if resume:
                _record_resume(run_dir, cfg)
            else:
                write_run_files(run_dir, cfg, device, dtype, dataset_dir, pricing, workload)
            found = read_cells(run_dir).cells
            the_plan.done = {c.cell_id for c in found if c.ok or keep_failed}
            runner = Runner(cfg, run_dir, dataset_dir, device, dtype, pricing, display)
            display.start(the_plan)
            try:
                runner.run([c for c in the_plan.cells if c.cell_id not in the_plan.done])
            finally:
                write_models(run_dir, runner.models_info, _footprints(the_plan))
                display.stop()
    except UserError:
        if created and not read_cells(run_dir).cells:
            shutil.rmtree(run_dir, ignore_errors=True)  # a run that never started leaves nothing behind
        raise
    return read_cells(run_dir).cells
