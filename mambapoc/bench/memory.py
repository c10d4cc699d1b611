"""Peak memory of one cell, and the memory limit that turns "would not fit" into an `oom` cell.

Measured, as `peak_mem_bytes`: the most bytes of tensors alive at once while the cell's prompt is
prefilled and decoded, above those alive before (the weights). On a GPU that is torch's peak allocated
bytes; on a CPU it is counted from torch's allocation events in one untimed pass (`tensor_peak`), since
the process's resident memory for the same work varies by up to 2x with the state of malloc's free lists
and per-thread arenas. A CPU cell also records `peak_rss_bytes`: what the worker took from the OS during
its timed runs above its idle resident memory (VmHWM, which Linux lets a process reset through
/proc/self/clear_refs), from a baseline taken after freed heap went back to the OS (glibc's malloc_trim). The worker warms its model up once before its first cell, so one-time
allocations (thread pools, compiled kernels) sit in every baseline rather than in the first cell.

Limited: on a GPU, torch's per-process memory fraction makes the allocator refuse more
(torch.OutOfMemoryError). On a CPU, what the machine would run out of: resident memory. The parent kills
the worker when its resident memory passes the baseline plus the limit, and a cell whose `peak_rss_bytes`
passed it between two samples is recorded as `oom` too: through a cgroup v2 `memory.max` where this process may create a cgroup
(the kernel enforces it), and always through a watchdog in the parent that samples the worker's
resident memory. No path relies on an allocation failing inside a library, which some (Rust's
allocator, OpenMP) turn into a hang or an abort rather than an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import resource
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _status_kib(key: str, status: Path = _STATUS) -> int | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident memory of a process (this one by default); None once it is gone."""
    kib = _status_kib("VmRSS", _STATUS if pid is None else Path(f"/proc/{pid}/status"))
    if kib is not None:
        return kib * 1024
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


@functools.cache
def _malloc_trim():
    # Looked up once: find_library runs ldconfig in a subprocess.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: the baseline then includes what malloc keeps


class PeakMemory:
    """Peak memory of a cell's timed runs, read against the baseline `reset` takes before them: on a GPU
    the allocator's peak (`peak_mem_bytes`), on a CPU the resident memory's (`peak_rss_bytes`; there
    `peak_mem_bytes` comes from `tensor_peak`). Nothing runs between the timed runs, so measuring memory
    never changes what the timings see."""

    def __init__(self, device):
        self.device = device
        self.baseline = 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        gc.collect()
        if trim := _malloc_trim():
            trim(0)
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.baseline = rss_bytes() or 0

    def read(self) -> dict:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            return {"peak_mem_bytes": torch.cuda.max_memory_allocated(self.device) - self.baseline,
                    "peak_mem_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
                    "mem_kind": "cuda_allocated"}
        hwm = _status_kib("VmHWM")
        peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak_rss_bytes": peak - self.baseline}


def tensor_peak(work: Callable[[], object]) -> int:
    """The most bytes of CPU tensors alive at once during `work()`, above those alive before it, from
    torch's allocation events: the same work gives the same figure, whatever state malloc is in."""
    # kineto prints a line at every start and stop, which would cut through the live display.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    return peak


def limit_gpu(device, limit_bytes: int) -> None:
    """Let torch's allocator give this process at most `limit_bytes` more than it holds now."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    used = torch.cuda.memory_allocated(device)
    torch.cuda.set_per_process_memory_fraction(min(1.0, (used + limit_bytes) / total), device)


def is_oom(exc: BaseException) -> bool:
    """Whether an exception is an allocator's refusal (torch's on a GPU, Python's MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom_cls = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


class Cgroup:
    """A cgroup v2 of one worker, child of this process's own, whose `memory.max` the kernel enforces."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, name: str, root: Path = _CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Cgroup | None:
        """A new child cgroup, or None where this process may not make one with the memory controller
        (cgroup v1, no delegation, no permission): the watchdog then limits alone."""
        try:
            own = next((line[3:] for line in proc_cgroup.read_text().splitlines() if line.startswith("0::")), None)
            if own is None:
                return None
            parent = root / own.strip().lstrip("/")
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None
            path = parent / name
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    def _write(self, name: str, value: str) -> bool:
        try:
            (self.path / name).write_text(value)
            return True
        except OSError:
            return False

    def add(self, pid: int) -> bool:
        return self._write("cgroup.procs", str(pid))

    def limit(self, extra_bytes: int | None) -> None:
        """Allow what the cgroup holds now plus `extra_bytes` (None: no limit)."""
        if extra_bytes is None:
            self._write("memory.max", "max")
            return
        try:
            current = int((self.path / "memory.current").read_text())
        except (OSError, ValueError):
            return
        self._write("memory.swap.max", "0")  # swapping instead of failing would only be slow
        self._write("memory.max", str(current + extra_bytes))

    def oom_kills(self) -> int:
        try:
            for line in (self.path / "memory.events").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        try:
            os.rmdir(self.path)
        except OSError:
            pass
