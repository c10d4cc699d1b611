"""Timers that a benchmarking engineer would sign: warmup, then repeat until both a minimum count and
a minimum duration are reached, with CUDA synchronised around every measured region; and a verdict on
each measurement, since machines are shared: the spread of its samples, and whether other processes
wanted the CPU while it ran. An unstable measurement is taken again, a bounded number of times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mambapoc.results import Timing

_PRESSURE = Path("/proc/pressure/cpu")
# Sample series judged for spread; time to first token is prefill plus one host copy.
JUDGED = ("prefill", "decode")


def sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def repeat(
    run_once: Callable[[], dict[str, float]],
    warmup: int,
    min_repeats: int,
    min_time_s: float,
    max_repeats: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Call `run_once` (which returns named durations) and collect the samples of each name."""
    for _ in range(warmup):
        run_once()
    samples: dict[str, list[float]] = {}
    start = clock()
    n = 0
    while n < min_repeats or (clock() - start < min_time_s and n < max_repeats):
        for k, v in run_once().items():
            samples.setdefault(k, []).append(v)
        n += 1
    return samples


def _pressure_total_us() -> int | None:
    """Microseconds in which some task waited for a CPU (Linux pressure stall information), if readable."""
    try:
        first = _PRESSURE.read_text().split("\n", 1)[0]  # some avg10=.. avg60=.. avg300=.. total=N
        return int(first.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Conditions:
    """What the machine was doing while a measurement ran."""

    wall_s: float
    cpu_s: float  # CPU time of this process, all its threads
    load_avg_1m: float | None
    cpu_pressure: float | None  # share of the wall time in which some task waited for a CPU

    @property
    def cpu_util(self) -> float | None:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None


class Watch:
    """Brackets a measurement to read its `Conditions`."""

    def __enter__(self) -> Watch:
        self._wall, self._cpu, self._pressure = time.perf_counter(), time.process_time(), _pressure_total_us()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._wall
        pressure = _pressure_total_us()
        share = None
        if pressure is not None and self._pressure is not None and wall > 0:
            share = min(1.0, (pressure - self._pressure) / 1e6 / wall)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.conditions = Conditions(wall, time.process_time() - self._cpu, load, share)


@dataclass(frozen=True)
class Verdict:
    stable: bool
    reason: str | None = None
    spread: float = 0.0  # the largest `Timing.spread` among the judged series


def judge(samples: dict[str, list[float]], conditions: Conditions, max_spread: float,
          max_pressure: float) -> Verdict:
    """Unstable when, in a judged series of 3 samples or more, the slowest tenth of runs took more than
    `max_spread` longer than the median (`Timing.spread`), or when other tasks waited for a CPU more than
    `max_pressure` of the time (the machine was busy)."""
    timings = {name: Timing.of(samples[name]) for name in JUDGED if len(samples.get(name, ())) >= 3}
    worst = max(timings.items(), key=lambda kv: kv[1].spread, default=None)
    spread = worst[1].spread if worst else 0.0
    if worst and spread > max_spread:
        return Verdict(False, f"the slowest {worst[0]} runs took {spread:.0%} longer than the median over "
                              f"{worst[1].n} runs", spread)
    if conditions.cpu_pressure is not None and conditions.cpu_pressure > max_pressure:
        return Verdict(False, f"other tasks waited for a CPU {conditions.cpu_pressure:.0%} of the time", spread)
    return Verdict(True, None, spread)


@dataclass(frozen=True)
class Measurement:
    samples: dict[str, list[float]]
    conditions: Conditions
    verdict: Verdict
    attempts: int


def measure(run_once: Callable[[], dict[str, float]], warmup: int, repeats: int, min_time_s: float, *,
            retries: int, max_spread: float, max_pressure: float,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """`repeat`, judged; an unstable measurement is taken again up to `retries` times. The first stable
    one is returned, else the one with the least spread, still marked unstable."""
    best: Measurement | None = None
    for attempt in range(1, retries + 2):
        with Watch() as w:
            samples = repeat(run_once, warmup, repeats, min_time_s, clock=clock)
        verdict = judge(samples, w.conditions, max_spread, max_pressure)
        this = Measurement(samples, w.conditions, verdict, attempt)
        if verdict.stable:
            return this
        if best is None or verdict.spread < best.verdict.spread:
            best = this
    return Measurement(best.samples, best.conditions, best.verdict, retries + 1)
