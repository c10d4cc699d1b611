"""The parent's side of the worker processes: one per model run, handed cells one at a time, each cell
watched until it ends one way or another: measured, over its time limit (`timeout`), silent and idle
for too long (`stalled`), over its memory limit or killed by the OS for memory (`oom`), or the worker
gone (`error`). Whatever happens becomes a result; nothing waits forever.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from mambapoc.bench import launch
from mambapoc.bench.memory import Cgroup, rss_bytes
from mambapoc.bench.plan import Planned

# How long a worker may take to import torch, load its model and warm it up.
LOAD_TIMEOUT_S = 900.0
POLL_S = 0.05  # how often the parent looks at a running cell (and its memory)
CPU_SAMPLE_S = 1.0  # how often it reads the worker's CPU time, to tell a stall from slow work


@dataclass(frozen=True)
class Limits:
    cell_timeout_s: float
    stall_timeout_s: float
    memory_limit_bytes: int | None  # above the worker's idle memory, on a CPU (a GPU limits in the worker)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cpu_seconds(pid: int) -> float | None:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


class Worker:
    """One model run's worker process, started on first use and again after it dies."""

    def __init__(self, spec: str, impl: str, cfg: dict, dataset_dir: str, limits: Limits, ctx=None):
        self.spec, self.impl, self.cfg, self.dataset_dir, self.limits = spec, impl, cfg, dataset_dir, limits
        self.ctx = ctx or mp.get_context("spawn")
        self.proc = None
        self.cgroup: Cgroup | None = None
        self.info: dict | None = None
        self.fatal: str | None = None  # why the model cannot be loaded: every later cell fails with it
        self._stop_lock = threading.RLock()

    def start(self) -> str | None:
        """Start the worker and wait for its model; returns why it failed, or None."""
        if self.proc is not None and self.proc.is_alive():
            return None
        if self.fatal:
            return self.fatal
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.proc = launch.spawn(self.ctx, "mambapoc.bench.worker:main", self.spec, self.impl, self.cfg,
                                 self.dataset_dir, self.inbox, self.outbox)
        if self.limits.memory_limit_bytes and self.cfg["device"] == "cpu":
            self.cgroup = Cgroup.create(f"mambapoc-{self.proc.pid}")
            if self.cgroup is not None and not self.cgroup.add(self.proc.pid):
                self.cgroup.remove()
                self.cgroup = None
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                kind, payload = self.outbox.get(timeout=POLL_S * 4)
            except queue_mod.Empty:
                if not self.proc.is_alive():
                    self.fatal = self._death_reason()
                    self.stop()
                    return self.fatal
                continue
            if kind == "ready":
                self.info = payload
                return None
            if kind == "fatal":
                self.fatal = payload
                self.stop()
                return payload
        self.stop()
        self.fatal = f"model did not load within {LOAD_TIMEOUT_S:g} s"
        return self.fatal

    def run(self, cell: Planned, on_start) -> dict:
        """Measure one cell; returns its measured fields (`status` first among them)."""
        self.inbox.put(cell)
        started, started_at = time.monotonic(), _now()
        baseline: int | None = None
        last_sign = started  # the last message or CPU use seen from the worker
        cpu, cpu_read = _cpu_seconds(self.proc.pid), started
        while True:
            try:
                kind, payload = self.outbox.get(timeout=POLL_S)
            except queue_mod.Empty:
                now = time.monotonic()
                ended = {"wall_s": now - started, "started_at": started_at}
                if not self.proc.is_alive():
                    return {**self._died(), **ended}
                if now - started > self.limits.cell_timeout_s:
                    self.kill()
                    return {"status": "timeout", "error": f"cell exceeded --cell-timeout "
                                                          f"{self.limits.cell_timeout_s:g} s", **ended}
                over = self._over_memory(baseline)
                if over:
                    self.kill()
                    return {"status": "oom", "error": over, **ended}
                if now - cpu_read >= CPU_SAMPLE_S:
                    used, cpu_read = _cpu_seconds(self.proc.pid), now
                    if used != cpu:
                        cpu, last_sign = used, now
                if now - last_sign > self.limits.stall_timeout_s:
                    self.kill()
                    return {"status": "stalled", "error": f"the worker sent nothing and used no CPU for "
                                                          f"{self.limits.stall_timeout_s:g} s", **ended}
                continue
            last_sign = time.monotonic()
            if kind == "start":
                on_start(cell)
            elif kind == "measuring":
                baseline = payload
                if self.cgroup is not None:
                    self.cgroup.limit(self.limits.memory_limit_bytes)
            elif kind == "cell":
                if self.cgroup is not None:
                    self.cgroup.limit(None)
                return {**payload[1], "wall_s": time.monotonic() - started, "started_at": started_at}

    def _over_memory(self, baseline: int | None) -> str | None:
        limit = self.limits.memory_limit_bytes
        if not limit or baseline is None or self.cfg["device"] != "cpu":
            return None
        rss = rss_bytes(self.proc.pid)
        if rss is None or rss - baseline <= limit:
            return None
        return (f"the worker's memory rose {_mib(rss - baseline)} above its idle {_mib(baseline)}, over "
                f"--memory-limit {_mib(limit)}")

    def _death_reason(self) -> str:
        code = self.proc.exitcode
        if self.cgroup is not None and self.cgroup.oom_kills():
            return "killed by the kernel at the cgroup memory limit (--memory-limit)"
        if code == -9:
            return "killed by the OS (SIGKILL), most likely out of host memory"
        return f"worker exited with code {code}"

    def _died(self) -> dict:
        why = self._death_reason()
        status = "oom" if self.proc.exitcode == -9 else "error"
        self.stop()
        return {"status": status, "error": why}

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        self.stop()

    def stop(self) -> None:
        """End the worker (asked nicely, then killed) and forget it; the next `start` makes a new one."""
        with self._stop_lock:  # the sweep's thread and an interrupted caller may both stop it
            self._stop()

    def _stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            try:
                self.inbox.put(None)
            except (OSError, ValueError):
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join(timeout=10)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        self.proc = None
