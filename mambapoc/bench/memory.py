"""Peak memory of one cell, and an optional cap that turns "would not fit" into an OOM result.

GPU: torch's peak allocated/reserved counters, reset before each cell. CPU: the kernel's peak RSS
(VmHWM), which Linux lets a process reset through /proc/self/clear_refs; the cell's figure is that
peak minus the worker's idle RSS measured before the cell, so the model's own weights are excluded.
Before that baseline, freed heap goes back to the OS (glibc's malloc_trim): otherwise memory an
earlier, larger cell left in malloc's free lists would be reused unseen and the cell would read ~0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import psutil

    return psutil.Process().memory_info().rss


@functools.cache
def _malloc_trim():
    # Looked up once: find_library runs ldconfig in a subprocess.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: the baseline then includes what malloc keeps


def _trim_heap() -> None:
    gc.collect()
    if trim := _malloc_trim():
        trim(0)


class PeakMemory:
    def __init__(self, device: torch.device):
        self.device = device
        self.baseline = 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        _trim_heap()
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.baseline = rss_bytes()

    def read(self) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return {
                "peak_mem_bytes": torch.cuda.max_memory_allocated(self.device) - self.baseline,
                "peak_mem_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
                "mem_kind": "cuda_allocated",
            }
        hwm = _status_kib("VmHWM")
        peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak_mem_bytes": max(0, peak - self.baseline), "mem_kind": "rss_delta"}


def apply_limit(device: torch.device, limit_bytes: int) -> None:
    """Cap what the worker may allocate from now on, so a cell that needs more fails as an OOM."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        used = torch.cuda.memory_allocated(device)
        torch.cuda.set_per_process_memory_fraction(min(1.0, (used + limit_bytes) / total), device)
        return
    # RLIMIT_DATA covers heap and private anonymous mappings (where tensors live) since Linux 4.7.
    data_kib = _status_kib("VmData") or 0
    soft = data_kib * 1024 + limit_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom_cls = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)
