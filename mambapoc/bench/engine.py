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
from mambapoc.bench.devices import Slot, slots
from mambapoc.bench.display import Silent
from mambapoc.bench.plan import Plan, plan
from mambapoc.bench.sweep import Sweep
from mambapoc.errors import UserError
from mambapoc.fsutil import exclusive, write_atomic
from mambapoc.results import Cell, read_cells

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

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu: {cpu_model()}"


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


def check(cfg: CompareConfig) -> tuple[Plan, list[Slot], str, dict[str, dict]]:
    """Everything about a comparison that can be checked without its dataset: the models resolve, the
    devices exist, each device has a price. Returns the plan, the device slots, the dtype and each slot's
    pricing."""
    import torch

    the_plan = plan(cfg)
    if cfg.executor == "ray":
        from mambapoc.bench.ray_executor import check_cluster

        return (the_plan, *check_cluster(cfg))  # the cluster decides the device, its name and its price
    # --devices alone decides the kind of device (--device auto would pick the GPU when there is one).
    kind = cfg.devices[0].split(":")[0].replace("all", "cuda") if cfg.devices and cfg.device == "auto" else None
    device = kind or cfg.resolved_device()
    found = slots(cfg.devices, device)
    if cfg.interleave and len(found) > 1:
        raise UserError("--interleave alternates models on one device; with several --devices each device "
                        "runs its own models (drop one of the two)")
    dtype = cfg.resolved_dtype(found[0].device.split(":")[0])
    pricing = {}
    for s in found:
        # A worker computes with its pinned cores, else --threads, else torch's default (the same in every
        # process here).
        threads = len(s.cpus) or cfg.threads or torch.get_num_threads()
        pricing[s.label] = cost.price_for(device_name(s.device), cfg.pricing_file, cfg.price_per_hour_usd, threads)
    return the_plan, found, dtype, pricing


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
    the_plan, devices, dtype, pricing = check(cfg)
    workload = {"requests_per_day": cfg.requests_per_day,
                "length_tokens": cfg.workload_length or max(cfg.lengths), "new_tokens": cfg.new_tokens}
    created = False if resume else _new_run_dir(run_dir)
    display = display or Silent()
    try:
        with exclusive(run_dir / LOCK, f"run directory {run_dir}"):
            if resume:
                _record_resume(run_dir, cfg)
            else:
                write_run_files(run_dir, cfg, ", ".join(s.label for s in devices), dtype, dataset_dir,
                                pricing[devices[0].label], workload)
            found = read_cells(run_dir).cells
            the_plan.done = {c.cell_id for c in found if c.ok or keep_failed}
            sweep = Sweep(cfg, run_dir, dataset_dir, devices, dtype, pricing, display)
            display.start(the_plan)
            try:
                sweep.run([c for c in the_plan.cells if c.cell_id not in the_plan.done])
            finally:
                write_models(run_dir, sweep.models_info, _footprints(the_plan))
                display.stop()
    except UserError:
        if created and not read_cells(run_dir).cells:
            shutil.rmtree(run_dir, ignore_errors=True)  # a run that never started leaves nothing behind
        raise
    return read_cells(run_dir).cells
