"""Several devices of one machine working through a sweep: one worker per device, cells handed to whichever
device is free. A device keeps taking the cells of the model it has loaded while there are any, so a
model loads once per device; no two timing cells ever share a device.

A CPU can be split into "devices" too (`cpu:0,cpu:1`): each worker is pinned to its share of the cores,
with as many torch threads, so two workers never compete for a core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mambapoc.bench.plan import Planned
from mambapoc.errors import UserError


@dataclass(frozen=True)
class Slot:
    """One device a worker runs on: `device` for torch ("cuda:1", "cpu"), `label` in the cells ("cuda:1",
    "cpu:0"), and for a share of a CPU the cores it is pinned to."""

    device: str
    label: str
    cpus: tuple[int, ...] = ()


def slots(specs: list[str], default: str) -> list[Slot]:
    """The slots `--devices` names (`all`: every GPU), or the one default device."""
    if not specs:
        return [Slot(default, default)]
    if specs == ["all"]:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UserError("--devices all: this machine has no CUDA GPU (split a CPU with cpu:0,cpu:1)")
        specs = [f"cuda:{i}" for i in range(count)]
    cpu_specs = [s for s in specs if s.startswith("cpu")]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cpu_specs) > len(cores):
        raise UserError(f"--devices: {len(cpu_specs)} CPU devices but only {len(cores)} cores to pin them to")
    share = len(cores) // max(len(cpu_specs), 1)
    out = []
    for spec in specs:
        kind, _, index = spec.partition(":")
        if kind not in ("cpu", "cuda") or not index.isdigit():
            raise UserError(f"--devices {spec!r}: give cuda:N, cpu:N, or all")
        if kind == "cuda":
            out.append(Slot(spec, spec))
        else:
            i = cpu_specs.index(spec)
            out.append(Slot("cpu", spec, tuple(cores[i * share:(i + 1) * share])))
    if len({s.label for s in out}) != len(out):
        raise UserError("--devices: a device is listed twice")
    kinds = {s.device.split(":")[0] for s in out}
    if len(kinds) > 1:
        # One dtype and one meaning of "fast" per run; measure a CPU and a GPU in two runs and merge reports.
        raise UserError("--devices: list GPUs or shares of the CPU, not both (run each in its own --out, then "
                        "`mambapoc report RUN1 RUN2` compares them)")
    if kinds != {default.split(":")[0]}:
        raise UserError(f"--devices {','.join(specs)} does not match --device {default}")
    if "cuda" in kinds:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [s.label for s in out if int(s.label.split(":")[1]) >= count]
        if missing:
            raise UserError(f"--devices: {', '.join(missing)} not found (this machine has {count} CUDA GPUs)")
    return out


class Pool:
    """The cells left to run. A device asks for the next cell of the model it has loaded; failing that, of a
    model no other device has loaded; failing that (the end of the sweep), of any model, which it loads too
    so that no device idles while cells are left."""

    def __init__(self, cells: list[Planned]):
        self._cells = list(cells)
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[str, str]] = {}  # device label -> (model, impl) its worker holds
        self.stopped = False

    def take(self, label: str) -> Planned | None:
        with self._lock:
            if self.stopped or not self._cells:
                return None
            mine = self._loaded.get(label)
            elsewhere = {run for other, run in self._loaded.items() if other != label}
            runs = [(c.model, c.impl) for c in self._cells]
            i = next((i for i, r in enumerate(runs) if r == mine), None)
            if i is None:
                i = next((i for i, r in enumerate(runs) if r not in elsewhere), 0)
            cell = self._cells.pop(i)
            self._loaded[label] = (cell.model, cell.impl)
            return cell


def run_on(slots_: list[Slot], cells: list[Planned], serve: Callable[[Slot, Pool], None]) -> None:
    """`serve(slot, pool)` on a thread per slot until the pool is empty; an interrupt stops every slot."""
    pool = Pool(cells)
    errors: list[BaseException] = []

    def main(slot: Slot) -> None:
        try:
            serve(slot, pool)
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread below
            pool.stopped = True
            errors.append(e)

    threads = [threading.Thread(target=main, args=(s,), name=f"device-{s.label}", daemon=True) for s in slots_]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(timeout=0.5)
    except KeyboardInterrupt:
        pool.stopped = True
        raise
    if errors:
        raise errors[0]
