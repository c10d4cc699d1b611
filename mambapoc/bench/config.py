"""What a comparison runs: models × lengths × tasks, and how it measures them.

One `CompareConfig` comes from CLI options or from a recipe's `compare:` section; it is saved as the
run's `config.yaml` so that `--resume` and a rerun use exactly the same settings.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mambapoc.errors import UserError
from mambapoc.tasks.spec import TaskSpec, parse_length, parse_lengths, parse_tasks

DEFAULT_MODELS = ("bundled:mamba-tiny", "bundled:transformer-tiny")
DEFAULT_TASKS = ("continuation", "fewshot-classify", "needle")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
MAMBA_IMPLS = ("ours", "hf", "both")
KV_CACHES = ("static", "dynamic")
EXECUTORS = ("local", "ray")
# A Ray cluster to connect to: auto (the one this machine belongs to, or $RAY_ADDRESS), local (start one
# here), the HOST:PORT of its head (GCS), or ray://HOST:PORT (Ray Client, from outside the cluster).
_RAY_ADDRESS = re.compile(r"^(auto|local|(ray://)?[\w.\-]+:\d+)$")
# Shorter names a recipe or the command line may use for some settings.
ALIASES = {"cell_timeout": "cell_timeout_s", "memory_limit": "memory_limit_bytes", "pricing": "pricing_file",
           "price_per_hour": "price_per_hour_usd", "min_time": "min_time_s", "stall_timeout": "stall_timeout_s",
           "memory_budget": "memory_budget_bytes", "max_token_latency": "max_token_latency_s",
           "max_ttft": "max_ttft_s"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.I)


@dataclass
class CompareConfig:
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    dataset: str = "sample"
    data_dir: str | None = None
    lengths: list[int] = field(default_factory=lambda: [1024, 4096])
    tasks: list[TaskSpec] = field(default_factory=lambda: [TaskSpec(t) for t in DEFAULT_TASKS])
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 1
    new_tokens: int = 16
    repeats: int = 3
    min_time_s: float = 1.0
    warmup: int = 1
    instances: int = 20
    cell_timeout_s: float = 1800.0
    stall_timeout_s: float = 120.0
    memory_limit_bytes: int | None = None
    threads: int | None = None
    mamba_impl: str = "ours"
    seed: int = 0
    pricing_file: str | None = None
    price_per_hour_usd: float | None = None
    requests_per_day: int = 10_000
    workload_length: int | None = None
    interleave: bool = False
    prefill_chunk: int = 0  # tokens per prefill piece for every model (0: the whole prompt at once)
    kv_cache: str = "static"  # a Transformer's cache for timed requests: static (pre-allocated) or dynamic
    compile: bool = False  # torch.compile the decode step of every model
    # Serving capacity: batches to measure (ints, or "auto" for the largest that fits the bounds below).
    batch_sizes: list = field(default_factory=list)
    memory_budget_bytes: int | None = None  # default: what the device has free
    max_token_latency_s: float | None = None
    max_ttft_s: float | None = None
    max_batch: int = 256
    devices: list = field(default_factory=list)  # cuda:N / cpu:N / all: one worker per device
    max_spread: float = 0.25  # how much slower than the median the slowest tenth of runs may be (Timing.spread)
    remeasure: int = 2  # extra measurements of an unstable cell before it is marked so
    executor: str = "local"  # local: this machine's workers; ray: one Ray actor per model run (ray_executor.py)
    ray_address: str = "auto"
    ray_gpus_per_task: float = 1.0  # of a GPU sweep on Ray: each task's share of a GPU
    ray_cpus_per_task: int | None = None  # default: 1 on a GPU sweep; --threads, else 1, on a CPU sweep

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tasks"] = [t.to_dict() for t in self.tasks]
        return d

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every setting's name, and the aliases a recipe may use."""
        return (*(f.name for f in dataclasses.fields(cls)), *ALIASES)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "compare") -> CompareConfig:
        """Build and validate from a recipe or saved config; errors name the offending field."""
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in raw.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise UserError(f"{where}.{key}: unknown setting (known: {', '.join(sorted(known))})")
            values[name] = _convert(name, value, f"{where}.{key}")
        cfg = cls(**values)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "compare") -> None:
        def bad(name: str, msg: str) -> UserError:
            return UserError(f"{where}.{name}: {msg}")

        if not self.models:
            raise bad("models", "at least one model is needed")
        if len(set(self.models)) != len(self.models):
            raise bad("models", "a model is listed twice")
        if not self.lengths:
            raise bad("lengths", "at least one length is needed")
        if not self.tasks:
            raise bad("tasks", "at least one task is needed")
        from mambapoc.tasks import FAMILIES

        for t in self.tasks:
            if t.name not in FAMILIES:
                raise bad("tasks", f"unknown task {t.name!r} (known: {', '.join(sorted(FAMILIES))})")
        for name, allowed in (("device", DEVICES), ("dtype", DTYPES), ("mamba_impl", MAMBA_IMPLS),
                              ("kv_cache", KV_CACHES), ("executor", EXECUTORS)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"{getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("batch_size", "new_tokens", "repeats", "instances", "requests_per_day"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        for name in ("warmup", "min_time_s"):
            if not getattr(self, name) >= 0:  # NaN fails too
                raise bad(name, "must not be negative")
        for name in ("cell_timeout_s", "stall_timeout_s"):
            if not 0 < getattr(self, name) < math.inf:
                raise bad(name, "must be a positive number of seconds")
        if not 0 < self.max_spread < math.inf:
            raise bad("max_spread", "must be a positive fraction (0.1 = 10 %)")
        if self.remeasure < 0:
            raise bad("remeasure", "must not be negative")
        if self.prefill_chunk < 0:
            raise bad("prefill_chunk", "must be 0 (the whole prompt) or a number of tokens")
        for b in self.batch_sizes:
            if b != "auto" and (not isinstance(b, int) or isinstance(b, bool) or b < 1):
                raise bad("batch_sizes", f"{b!r}: a batch size is a whole number from 1, or auto")
        if self.max_batch < 1:
            raise bad("max_batch", "must be at least 1")
        for name in ("max_token_latency_s", "max_ttft_s"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) < math.inf:
                raise bad(name, "must be a positive duration")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise bad("memory_budget_bytes", "must be a positive size")
        if self.compile and self.warmup < 1:
            raise bad("warmup", "--compile needs a warm-up run (compilation happens there)")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise bad("memory_limit_bytes", "must be a positive size")
        if self.price_per_hour_usd is not None and not 0 < self.price_per_hour_usd < math.inf:
            raise bad("price_per_hour_usd", f"must be a positive number of dollars, not {self.price_per_hour_usd}")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be at least 1")
        self._validate_ray(bad)
        if self.pricing_file and self.price_per_hour_usd is not None:
            raise bad("pricing", "give a pricing file or a price per hour, not both")
        if self.pricing_file and not Path(self.pricing_file).is_file():
            raise bad("pricing", f"file {self.pricing_file} does not exist")

    def _validate_ray(self, bad) -> None:
        if not isinstance(self.ray_gpus_per_task, (int, float)) or not 0 < self.ray_gpus_per_task <= 1:
            raise bad("ray_gpus_per_task", "a worker uses one GPU: give 1, or a fraction to let Ray place several "
                                           "tasks on one GPU (their timings then share it)")
        if self.ray_cpus_per_task is not None and self.ray_cpus_per_task < 1:
            raise bad("ray_cpus_per_task", "must be at least 1")
        if self.executor != "ray":
            return
        if self.devices:
            raise bad("devices", "--devices spreads cells over this machine's devices; with --executor ray the "
                                 "cluster places them (drop one of the two)")
        if self.interleave:
            raise bad("interleave", "--interleave alternates models on one device; with --executor ray every "
                                    "model run is its own task (drop one of the two)")
        if not _RAY_ADDRESS.match(self.ray_address):
            raise bad("ray_address", f"{self.ray_address!r}: give auto, local, the head's HOST:PORT, or "
                                     f"ray://HOST:PORT (Ray Client)")

    def resolved_device(self) -> str:
        from mambapoc.envinfo import pick_device

        return pick_device(self.device)

    def resolved_dtype(self, device: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device == "cuda" else "float32"


def parse_size(text: str | int) -> int:
    """`2GB`, `512MiB`, `1.5g` or a plain byte count → bytes (binary units, like the memory it limits)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise UserError(f"cannot read size {text!r} (examples: 2GB, 512MB, 1073741824)")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)[:1].lower()]
    return int(float(m.group(1)) * scale)


def _convert(name: str, value, where: str):
    try:
        if name == "lengths":
            return parse_lengths(value)
        if name == "tasks":
            return parse_tasks(value)
        if name == "models":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(x).strip() for x in items if str(x).strip()]
        if name in ("memory_limit_bytes", "memory_budget_bytes"):
            return None if value is None else parse_size(value)
        if name in ("max_token_latency_s", "max_ttft_s"):
            return None if value is None else parse_duration(value)
        if name == "devices":
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(x).strip() for x in items if str(x).strip()]
        if name == "batch_sizes":
            items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, list) else [value]
            return [x.strip() if isinstance(x, str) and x.strip() == "auto" else _integer(x) for x in items
                    if str(x).strip()]
        if name == "workload_length":
            return None if value is None else parse_length(value)
        if name in ("batch_size", "new_tokens", "repeats", "warmup", "instances", "seed", "requests_per_day",
                    "remeasure", "max_batch"):
            return _integer(value)
        if name == "prefill_chunk":
            return parse_length(value) if value not in (0, "0") else 0
        if name in ("interleave", "compile"):
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if name in ("threads", "ray_cpus_per_task"):
            return None if value is None else _integer(value)
        if name in ("min_time_s", "cell_timeout_s", "stall_timeout_s", "price_per_hour_usd", "max_spread",
                    "ray_gpus_per_task"):
            return None if value is None else float(value)
        return None if value is None else str(value)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except (TypeError, ValueError):
        raise UserError(f"{where}: cannot use {value!r} here") from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def parse_duration(text: str | float) -> float:
    """`50ms`, `2s`, `0.5` (seconds) -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise UserError(f"cannot read duration {text!r} (examples: 50ms, 2s, 0.5)")
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


def _integer(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)
