"""How many requests one device serves at once: the largest batch that fits a memory budget and, when
asked, keeps per-token latency and time to first token within bounds.

The search doubles the batch until a probe fails, then bisects between the last batch that passed and the
first that failed. Each probe runs the request for real at that batch, in the worker; a probe that fails
(over the budget, too slow, or refused by the allocator) is recorded and ends only the search, never the
sweep. A probe whose memory, extrapolated from the last one that passed, would exceed the budget by far is
not run at all: on a CPU, where the budget is emulated, running it could take the machine down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

BISECT_STEPS = 4  # after the doubling: the answer within 1/16 of the last doubling step
SKIP_FACTOR = 1.5  # a probe predicted above budget x this is recorded as over budget without running


@dataclass(frozen=True)
class Probe:
    batch: int
    status: str  # "ok", "oom" (over the budget or refused), "slow" (a latency bound), "predicted_oom"
    memory_bytes: int | None = None  # weights + the most tensors alive at once
    token_latency_s: float | None = None
    ttft_s: float | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Bounds:
    memory_bytes: int
    token_latency_s: float | None = None
    ttft_s: float | None = None
    max_batch: int = 256

    def judge(self, batch: int, memory: int | None, token_latency: float | None, ttft: float | None) -> Probe:
        if memory is not None and memory > self.memory_bytes:
            return Probe(batch, "oom", memory, token_latency, ttft,
                         f"{memory:,} bytes over the memory budget of {self.memory_bytes:,}")
        if self.token_latency_s is not None and token_latency is not None and token_latency > self.token_latency_s:
            return Probe(batch, "slow", memory, token_latency, ttft,
                         f"{token_latency * 1000:.1f} ms per token over the bound of {self.token_latency_s * 1000:g}")
        if self.ttft_s is not None and ttft is not None and ttft > self.ttft_s:
            return Probe(batch, "slow", memory, token_latency, ttft,
                         f"{ttft:.2f} s to the first token over the bound of {self.ttft_s:g}")
        return Probe(batch, "ok", memory, token_latency, ttft)


@dataclass(frozen=True)
class Capacity:
    batch: int | None  # None: not even one request fits
    limit: str  # what stopped the search: "memory", "latency", "max_batch"
    probes: tuple[Probe, ...]


def search(probe: Callable[[int], Probe], bounds: Bounds) -> Capacity:
    """The largest batch whose probe passes; `probe(batch)` runs one and judges it with `bounds`."""
    probes: list[Probe] = []

    def run(batch: int) -> Probe:
        last_ok = next((p for p in reversed(probes) if p.ok and p.memory_bytes), None)
        if last_ok is not None:
            predicted = last_ok.memory_bytes * batch / last_ok.batch
            if predicted > bounds.memory_bytes * SKIP_FACTOR:
                p = Probe(batch, "predicted_oom", int(predicted), reason=f"predicted {int(predicted):,} bytes, "
                          f"far over the memory budget of {bounds.memory_bytes:,}")
                probes.append(p)
                return p
        p = probe(batch)
        probes.append(p)
        return p

    good, bad = None, None
    batch = 1
    while True:
        if not run(batch).ok:
            bad = batch
            break
        good = batch
        if batch >= bounds.max_batch:
            return Capacity(good, "max_batch", tuple(probes))
        batch = min(2 * batch, bounds.max_batch)
    if good is None:
        return Capacity(None, _limit(probes[-1]), tuple(probes))
    failed = probes[-1]
    for _ in range(BISECT_STEPS):
        if bad - good <= 1:
            break
        mid = (good + bad) // 2
        p = run(mid)
        if p.ok:
            good = mid
        else:
            bad, failed = mid, p
    return Capacity(good, _limit(failed), tuple(probes))


def _limit(p: Probe) -> str:
    return "latency" if p.status == "slow" else "memory"
