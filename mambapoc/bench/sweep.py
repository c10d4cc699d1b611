"""Running planned cells on workers and recording each as it ends: model by model, interleaved (each length
and task across all models), spread over several devices (`bench/devices.py`), or over a Ray cluster
(`bench/ray_executor.py`)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

from mambapoc.bench.config import CompareConfig
from mambapoc.bench.devices import Pool, Slot, run_on
from mambapoc.bench.plan import Planned
from mambapoc.bench.runner import Limits, Worker
from mambapoc.results import Cell, ResultStore


class Sweep:
    """Runs planned cells in worker processes and appends each finished cell to results.jsonl. `slots` are
    the devices; `pricing` is each slot's price (by label)."""

    def __init__(self, cfg: CompareConfig, run_dir: Path, dataset_dir: Path, slots: list[Slot], dtype: str,
                 pricing: dict[str, dict], display):
        self.cfg, self.slots, self.dtype, self.pricing, self.display = cfg, slots, dtype, pricing, display
        self.store = ResultStore(run_dir)
        self.dataset_dir = str(dataset_dir)
        self.limits = Limits(cfg.cell_timeout_s, cfg.stall_timeout_s, cfg.memory_limit_bytes)
        self.models_info: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._workers: list[Worker] = []
        self._stopping = False

    def _worker(self, run: tuple[str, str], slot: Slot) -> Worker:
        cfg = {**self.cfg.to_dict(), "device": slot.device, "dtype": self.dtype, "cpus": list(slot.cpus)}
        worker = Worker(*run, cfg, self.dataset_dir, self.limits)
        with self._lock:
            self._workers.append(worker)
        return worker

    def run(self, cells: list[Planned]) -> None:
        try:
            if self.cfg.executor == "ray":
                from mambapoc.bench import ray_executor

                ray_executor.run(self, cells)  # one Ray actor per model run; each cell back through _finish
            elif len(self.slots) > 1:
                run_on(self.slots, cells, self._serve)
            else:
                self._run_one(cells, self.slots[0])
        finally:
            # Interrupted: the cells running now are not results; stop every worker without recording them.
            self._stopping = True
            for w in self._workers:
                w.stop()

    def _run_one(self, cells: list[Planned], slot: Slot) -> None:
        """Model by model; or, with `interleave`, each (length, task) across all models before the next,
        every model in its own warm worker, so that drift on a shared machine hits them alike."""
        runs = list(dict.fromkeys((c.model, c.impl) for c in cells))
        if self.cfg.interleave:
            lengths, tasks = sorted({c.length_tokens for c in cells}), [t.key for t in self.cfg.tasks]
            cells = sorted(cells, key=lambda c: (lengths.index(c.length_tokens), tasks.index(c.task.key),
                                                 runs.index((c.model, c.impl))))
        workers: dict[tuple[str, str], Worker] = {}
        for cell in cells:
            run = (cell.model, cell.impl)
            if run not in workers:
                if not self.cfg.interleave:
                    for w in workers.values():
                        w.stop()  # one model in memory at a time
                workers[run] = self._worker(run, slot)
            self._measure(workers[run], cell, slot)

    def _serve(self, slot: Slot, pool: Pool) -> None:
        """One device's share of a parallel sweep: the next cell of its loaded model, else of any model."""
        worker, loaded = None, None
        try:
            while (cell := pool.take(slot.label)) is not None:
                run = (cell.model, cell.impl)
                if run != loaded:
                    if worker is not None:
                        worker.stop()
                    worker, loaded = self._worker(run, slot), run
                self._measure(worker, cell, slot)
        finally:
            if worker is not None:
                worker.stop()

    def _measure(self, worker: Worker, cell: Planned, slot: Slot) -> None:
        failed = worker.start()
        if failed:
            self._finish(cell, worker.info, {"status": "error", "error": failed}, slot)
            return
        self.models_info[cell.key] = worker.info
        self._finish(cell, worker.info, worker.run(cell, self.display.cell_started), slot)

    def _finish(self, planned: Planned, info: dict | None, measured: dict, slot: Slot) -> None:
        from mambapoc.models.registry import short_name

        if self._stopping:
            return
        info = info or {}
        pricing = self.pricing[slot.label]
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
            "device": slot.label,
            "device_name": pricing["device_name"],
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
            cell = cell.priced(pricing["price_per_hour_usd"])
        with self._lock:
            self.store.append(cell)
            self.display.cell_finished(cell)
