"""The result cell: one model × task × length measured by `compare`, as one typed record.

Every writer and reader of a run's results.jsonl goes through `Cell` (the worker's measurements, the
engine, cost, the report, cells.csv), so a new metric is one new field here and in docs/formats.md. On
disk a cell is one flat JSON object per line; `schema` says which version wrote it, and keys this
version does not know are kept in `extra` and written back unchanged.

The file is append-only: each cell is written with a single `write` of one whole line, then fsync'ed,
so a crash, a Ctrl-C or a SIGKILL can at worst leave a torn last line, which readers skip and `--resume`
redoes. A cell id written twice (a failed cell run again) counts once: the last line wins.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 2
RESULTS = "results.jsonl"
_REQUIRED = ("model", "task", "length_tokens", "status")


def model_key(spec: str, cross_check: bool = False) -> str:
    """Which model a cell measured: its spec, or `SPEC@hf` when a Mamba checkpoint ran on transformers'
    implementation as a cross-check of ours (one checkpoint, two models in the report)."""
    return f"{spec}@hf" if cross_check else spec


def cell_id(key: str, task_key: str, length: int) -> str:
    """`MODEL_KEY|TASK_KEY|LENGTH`: a cell's name within its run, the same planned as finished."""
    return f"{key}|{task_key}|{length}"


@dataclass(frozen=True)
class Timing:
    """Summary of repeated measurements of one duration, in seconds, with two measures of spread: `cv`,
    the coefficient of variation (sample standard deviation over the mean), and `spread`, how much slower
    the slowest tenth of runs were than the median, which one stray run among many does not move."""

    p50: float
    p90: float
    min: float
    max: float
    mean: float
    n: int
    cv: float = 0.0

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        s = sorted(samples)
        n = len(s)

        def q(p: float) -> float:
            # Linear interpolation between order statistics (numpy's default percentile).
            pos = p * (n - 1)
            lo = int(pos)
            hi = min(lo + 1, n - 1)
            return s[lo] + (s[hi] - s[lo]) * (pos - lo)

        mean = sum(s) / n
        sd = (sum((x - mean) ** 2 for x in s) / (n - 1)) ** 0.5 if n > 1 else 0.0
        return cls(q(0.5), q(0.9), s[0], s[-1], mean, n, sd / mean if mean > 0 else 0.0)

    @property
    def spread(self) -> float:
        return (self.p90 - self.p50) / self.p50 if self.p50 > 0 else 0.0


@dataclass(frozen=True)
class Cell:
    # What was planned.
    model: str
    task: str
    length_tokens: int
    status: str  # ok, oom, timeout, stalled or error
    impl: str = "ours"
    cross_check: bool = False
    task_options: dict = field(default_factory=dict)
    task_key: str = ""
    # The model as it loaded.
    model_name: str | None = None
    family: str | None = None
    params: int | None = None
    trained_length: int | None = None
    # Conditions.
    batch_size: int = 1
    dtype: str | None = None
    device: str | None = None
    device_name: str | None = None
    torch_threads: int | None = None
    # Outcome.
    error: str | None = None
    traceback: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wall_s: float | None = None
    # How the model ran: prompt read in pieces of this many tokens (0: whole), and how it decoded.
    prefill_chunk: int | None = None
    decode_path: str | None = None
    # Speed (finished cells).
    prefill_s: Timing | None = None
    ttft_s: Timing | None = None
    decode_s: Timing | None = None  # the whole decode of `new_tokens`
    prefill_tok_s: float | None = None
    decode_ms_per_tok: float | None = None
    decode_tok_s: float | None = None
    new_tokens: int | None = None
    prompt_tokens: int | None = None
    score_s: float | None = None
    # Memory.
    # How far the timings can be trusted: how many times the cell was measured, and why the kept
    # measurement is still unstable (None: stable); the machine's state while it ran.
    timing_attempts: int | None = None
    unstable: str | None = None
    load_avg_1m: float | None = None
    cpu_pressure: float | None = None
    cpu_util: float | None = None
    peak_mem_bytes: int | None = None
    peak_mem_reserved_bytes: int | None = None
    peak_rss_bytes: int | None = None
    mem_kind: str | None = None
    mem_error: str | None = None  # why peak_mem_bytes is missing
    state_bytes: int | None = None
    # Serving capacity (task "serving"): why the batch is where it is, the probes that found it, the budget.
    capacity_limit: str | None = None  # "memory", "latency" or "max_batch"
    probes: list = field(default_factory=list)
    memory_budget_bytes: int | None = None
    weights_bytes: int | None = None
    # The task family's own metrics (accuracy, n, ci95, chance, by_depth, bits_per_byte, ...).
    metrics: dict = field(default_factory=dict)
    # Cost.
    price_per_hour_usd: float | None = None
    cost_usd_per_1m_input: float | None = None
    cost_usd_per_1m_output: float | None = None
    cost_usd_per_request: float | None = None
    schema: int = SCHEMA
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.task_key:
            object.__setattr__(self, "task_key", self.task)

    @property
    def key(self) -> str:
        return model_key(self.model, self.cross_check)

    @property
    def cell_id(self) -> str:
        return cell_id(self.key, self.task_key, self.length_tokens)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def answers(self) -> int:
        """How many answers the accuracy rests on."""
        return int(self.metrics.get("n") or 0)

    @property
    def bits_per_byte(self) -> float | None:
        return self.metrics.get("bits_per_byte")

    def replace(self, **changes: Any) -> Cell:
        return dataclasses.replace(self, **changes)

    def priced(self, price_per_hour: float) -> Cell:
        """This cell with its cost at `price_per_hour` dollars a device-hour, from its measured throughput:
        $ per 1M input and output tokens, and $ per request (a prompt of the cell's length and its new
        tokens, over the batch)."""
        per_s = price_per_hour / 3600.0
        costs: dict[str, float] = {"price_per_hour_usd": price_per_hour}
        if self.prefill_tok_s:
            costs["cost_usd_per_1m_input"] = per_s / self.prefill_tok_s * 1e6
        if self.decode_tok_s:
            costs["cost_usd_per_1m_output"] = per_s / self.decode_tok_s * 1e6
        if self.prefill_s and self.decode_ms_per_tok is not None and self.new_tokens is not None:
            seconds = self.prefill_s.p50 + self.new_tokens * self.decode_ms_per_tok / 1000.0
            costs["cost_usd_per_request"] = per_s * seconds / self.batch_size
        return self.replace(**costs)

    def to_json(self) -> dict:
        out = {"cell_id": self.cell_id, **self.extra}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                out[f.name] = dataclasses.asdict(value) if isinstance(value, Timing) else value
        return out

    @classmethod
    def from_json(cls, data: dict, strict: bool = False) -> Cell:
        """A cell from its JSON object. Unknown keys go to `extra`, or raise with `strict` (for the
        engine's own measurements, where an unknown key is a typo)."""
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            raise ValueError(f"cell lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in names and v is not None}
        extra = {k: v for k, v in data.items() if k not in names and k != "cell_id"}
        if strict and extra:
            raise ValueError(f"not fields of a cell: {', '.join(sorted(extra))}")
        for name in ("prefill_s", "ttft_s", "decode_s"):
            if isinstance(values.get(name), dict):
                known = {f.name for f in dataclasses.fields(Timing)}
                values[name] = Timing(**{k: v for k, v in values[name].items() if k in known})
        values["length_tokens"] = int(values["length_tokens"])
        if "cross_check" not in values:
            # Schema 1 spelled the cross-check only in the id, as `SPEC@hf|task|length`.
            values["cross_check"] = str(data.get("cell_id", "")).split("|", 1)[0].endswith("@hf")
        values.setdefault("schema", 1)
        return cls(**values, extra=extra)


@dataclass(frozen=True)
class Results:
    """What results.jsonl holds: each cell id once (its last line), and how many lines could not be read."""

    cells: list[Cell]
    unreadable: int = 0

    def ids(self) -> set[str]:
        return {c.cell_id for c in self.cells}


def read_cells(run_dir: str | os.PathLike) -> Results:
    """The cells of a run directory. A torn or malformed line is counted, never fatal: an interrupted run
    leaves a torn last line, and a resumed run appends after it."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return Results([])
    by_id: dict[str, Cell] = {}
    unreadable = 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                cell = Cell.from_json(data) if isinstance(data, dict) else None
            except (ValueError, TypeError):
                cell = None
            if cell is None:
                unreadable += 1
                continue
            by_id[cell.cell_id] = cell  # a cell run again replaces its earlier line, in its place
    return Results(list(by_id.values()), unreadable)


class ResultStore:
    """Appends finished cells to a run directory's results.jsonl."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / RESULTS
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        # A torn line must not swallow the next append: cut the file back to its last newline.
        if not self.path.is_file():
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, cell: Cell) -> None:
        line = (json.dumps(cell.to_json(), sort_keys=True, default=_jsonable) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
