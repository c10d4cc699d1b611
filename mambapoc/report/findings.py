"""The numbers behind the executive summary: speed and memory ratios, the accuracy difference with its
interval, cost per request and per month, the break-even length, the calibration threshold, and the
recommendation that follows from them. Everything here is computed from measured cells only."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field

from mambapoc.report import decision
from mambapoc.report.load import Model, Run, Variant, variant
from mambapoc.results import Cell

# A drop in accuracy larger than this is treated as material. A policy choice, not a measurement: the report
# states it next to every verdict that depends on it.
ACCURACY_MARGIN = 0.05
# The accuracy that automated answers must reach for the suggested review threshold, and the fewest instances
# above the threshold that make the suggestion worth stating.
CALIBRATION_TARGET = 0.95
CALIBRATION_MIN_INSTANCES = 30
DAYS_PER_MONTH = 30
# How peak memory was measured (results.Cell.mem_kind); rss_delta is what runs before cpu_allocated wrote.
MEM_KINDS = ("cuda_allocated", "cpu_allocated", "rss_delta")
_Z95 = 1.959964


@dataclass(frozen=True)
class Point:
    """One model at one length: medians over the cells that finished there, across tasks."""

    length: int
    status: str  # "ok" when any cell at this length finished, else its failure(s), e.g. "oom"
    n_cells: int = 0
    prefill_s: float | None = None
    ttft_s: float | None = None
    decode_ms: float | None = None
    prefill_tok_s: float | None = None
    decode_tok_s: float | None = None
    peak_mem: float | None = None
    mem_kind: str | None = None
    state_bytes: float | None = None
    cost_in_1m: float | None = None
    cost_out_1m: float | None = None
    unstable: tuple[str, ...] = ()  # why the timings of cells here stayed unstable, one reason per such cell


@dataclass(frozen=True)
class Speed:
    length: int
    mamba: Point
    transformer: Point

    @property
    def prefill_ratio(self) -> float:
        """How many times faster Mamba fills the prompt (below 1: slower)."""
        return self.transformer.prefill_s / self.mamba.prefill_s

    @property
    def decode_ratio(self) -> float | None:
        if self.mamba.decode_ms is None or self.transformer.decode_ms is None:
            return None
        return self.transformer.decode_ms / self.mamba.decode_ms

    @property
    def memory_ratio(self) -> float | None:
        """How many times less peak memory Mamba needs (below 1: more)."""
        if not self.mamba.peak_mem or not self.transformer.peak_mem:
            return None
        return self.transformer.peak_mem / self.mamba.peak_mem


@dataclass(frozen=True)
class Proportion:
    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)


@dataclass(frozen=True)
class Difference:
    """Mamba minus Transformer accuracy with a 95 % interval (Newcombe's method from Wilson intervals)."""

    mamba: Proportion
    transformer: Proportion

    @property
    def value(self) -> float:
        return self.mamba.value - self.transformer.value

    @property
    def interval(self) -> tuple[float, float]:
        (l1, u1), (l2, u2) = self.mamba.interval, self.transformer.interval
        p1, p2 = self.mamba.value, self.transformer.value
        return (
            self.value - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            self.value + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
        )


@dataclass(frozen=True)
class Accuracy:
    difference: Difference
    pairs: tuple[tuple[Variant, int], ...]  # the (task variant, length) pairs both models finished

    @property
    def verdict(self) -> str:
        """better, equivalent, worse or unclear: `decision.accuracy_class` at the margin."""
        return decision.accuracy_class(*self.difference.interval, ACCURACY_MARGIN)


@dataclass(frozen=True)
class CostAt:
    """One model's cost at the workload length."""

    in_1m: float
    out_1m: float
    per_request: float
    per_month: float | None
    basis: str  # "measured", "interpolated" (log-log between two measured lengths) or "nearest"
    from_lengths: tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    length: int
    new_tokens: int
    requests_per_day: int | None
    from_workload: bool  # False: no workload in config.yaml, so the longest length both models ran
    mamba: CostAt
    transformer: CostAt
    at_capacity: bool = False  # from throughput at each model's serving capacity, not one request at a time


@dataclass(frozen=True)
class BreakEven:
    kind: str  # "at", "always" (Mamba cheaper at every length), "never", "one_length"
    length: float | None
    lengths: tuple[int, ...]
    new_tokens: int


@dataclass(frozen=True)
class Calibration:
    total: int
    threshold: float | None
    covered: int = 0
    accuracy_above: float | None = None
    reason: str = "ok"  # "ok", "too_few" (instances), "not_reached" (no threshold reaches the target)


@dataclass(frozen=True)
class Recommendation:
    """The decision at the workload (`verdict`, from the accuracy and cost classes and which models ran
    there), the decision at each measured length and its bands, and how many answers per model would settle
    an unclear accuracy."""

    verdict: str  # a value of decision.TABLE, "only_mamba", "only_transformer", "neither" or "no_pair"
    conditions: tuple[str, ...]
    accuracy: str = "unclear"
    cost: str = "unknown"
    at_length: int | None = None  # the measured length whose feasibility decided, when one model did not run
    by_length: dict[int, str] = field(default_factory=dict)
    bands: tuple[decision.Band, ...] = ()
    settle: int | None = None


@dataclass(frozen=True)
class Findings:
    mamba: Model | None
    transformer: Model | None
    profiles: dict[str, dict[int, Point]]
    speed: Speed | None
    accuracy: Accuracy | None
    cost: Cost | None
    break_even: BreakEven | None
    calibration: dict[str, Calibration]
    only_mamba_ran: tuple[Point, ...]  # lengths where the Transformer failed and Mamba finished
    failures: tuple[Cell, ...]
    recommendation: Recommendation
    serving: dict[str, dict[int, Cell]] = field(default_factory=dict)  # model key -> length -> capacity cell
    cost_one_at_a_time: Cost | None = None  # the batch-1 cost, beside `cost` when that is at capacity


def wilson(correct: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + _Z95**2 / n
    centre = (p + _Z95**2 / (2 * n)) / denom
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(cells: list[Cell]) -> Proportion:
    """Pooled correct answers over cells; accuracies are stored as fractions of `n`."""
    correct = sum(round(c.accuracy * c.answers) for c in cells)
    return Proportion(correct, sum(c.answers for c in cells))


def has_accuracy(cell: Cell) -> bool:
    return cell.ok and cell.accuracy is not None and cell.answers > 0


SSM_FAMILIES = ("mamba", "mamba2", "hybrid")


def pick_pair(run: Run) -> tuple[Model | None, Model | None]:
    """The first model with SSM layers (Mamba-1, Mamba-2 or a hybrid) and the first Transformer in the run's
    order: the pair the summary compares. Every other model has its own rows in the tables and charts."""
    mamba = next((m for m in run.models if m.family in SSM_FAMILIES), None)
    transformer = next((m for m in run.models if m.family == "transformer"), None)
    return mamba, transformer


def profile(run: Run, model: Model) -> dict[int, Point]:
    by_length: dict[int, list[Cell]] = {}
    for cell in run.cells:
        if cell.key == model.key:
            by_length.setdefault(cell.length_tokens, []).append(cell)
    return {length: _point(length, cells) for length, cells in sorted(by_length.items())}


def failure_status(cells: list[Cell]) -> str:
    return "/".join(sorted({c.status for c in cells if not c.ok}))


def _point(length: int, cells: list[Cell]) -> Point:
    ok = [c for c in cells if c.ok]
    state = _median(c.state_bytes for c in cells)
    if not ok:
        return Point(length, failure_status(cells), state_bytes=state)
    return Point(
        length,
        "ok",
        n_cells=len(ok),
        prefill_s=_median((c.prefill_s and c.prefill_s.p50) for c in ok),
        ttft_s=_median((c.ttft_s and c.ttft_s.p50) for c in ok),
        decode_ms=_median(c.decode_ms_per_tok for c in ok),
        prefill_tok_s=_median(c.prefill_tok_s for c in ok),
        decode_tok_s=_median(c.decode_tok_s for c in ok),
        peak_mem=_median(c.peak_mem_bytes for c in ok),
        mem_kind=next((c.mem_kind for c in ok if c.mem_kind), None),
        state_bytes=state,
        cost_in_1m=_median(c.cost_usd_per_1m_input for c in ok),
        cost_out_1m=_median(c.cost_usd_per_1m_output for c in ok),
        unstable=tuple(c.unstable for c in ok if c.unstable),
    )


def _median(values) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def compute(run: Run) -> Findings:
    mamba, transformer = pick_pair(run)
    profiles = {m.key: profile(run, m) for m in run.models}
    failures = tuple(c for c in run.all_cells if not c.ok)
    calibration = {m.key: calibration_of(run, m) for m in run.models}
    if mamba is None or transformer is None:
        return Findings(
            mamba, transformer, profiles, None, None, None, None, calibration, (), failures,
            Recommendation("no_pair", ()),
        )
    pm, pt = profiles[mamba.key], profiles[transformer.key]
    common = [n for n in pm if n in pt and pm[n].status == "ok" and pt[n].status == "ok"]
    speed_lengths = [n for n in common if pm[n].prefill_s and pt[n].prefill_s]
    speed = Speed(speed_lengths[-1], pm[speed_lengths[-1]], pt[speed_lengths[-1]]) if speed_lengths else None
    only_mamba = tuple(pt[n] for n in pm if n in pt and pm[n].status == "ok" and pt[n].status != "ok")
    accuracy = _accuracy(run, mamba, transformer)
    new_tokens = _new_tokens(run)
    serving = serving_cells(run)
    cost = one_at_a_time = _cost(run, pm, pt, common, new_tokens)
    sm, st = (serving_points(serving.get(m.key, {})) for m in (mamba, transformer))
    both = [n for n in sm if n in st]
    at_capacity = _cost(run, sm, st, both, new_tokens) if both else None
    if at_capacity is not None:
        cost = dataclasses.replace(at_capacity, at_capacity=True)
        # Beside it, one request at a time as the serving sweep measured it (same prompts, same moment),
        # where it ran batch 1 for both models; else the batch-1 profile.
        single = serving_cells(run, batch=1)
        s1m, s1t = (serving_points(single.get(m.key, {})) for m in (mamba, transformer))
        one = [n for n in both if n in s1m and n in s1t]
        one_at_a_time = (_cost(run, s1m, s1t, one, new_tokens) if one else None) or one_at_a_time
    break_even = break_even_of(pm, pt, common, new_tokens)
    by_length = {n: _accuracy(run, mamba, transformer, n) for n in sorted(set(pm) | set(pt))}
    recommendation = _recommend(accuracy, cost, break_even, only_mamba, calibration[mamba.key],
                                _verdicts_by_length(pm, pt, by_length, accuracy, new_tokens))
    if beyond_training(run, mamba, transformer):
        recommendation = dataclasses.replace(
            recommendation, conditions=(*recommendation.conditions[:-1], "beyond_trained",
                                        recommendation.conditions[-1]))
    return Findings(
        mamba, transformer, profiles, speed, accuracy, cost, break_even, calibration, only_mamba, failures,
        recommendation, serving, one_at_a_time if cost is not one_at_a_time else None,
    )


def serving_cells(run: Run, batch: int | None = None) -> dict[str, dict[int, Cell]]:
    """Per model and length, the serving cell at the largest batch that finished (the capacity search's,
    when one ran), or at `batch`."""
    best: dict[str, dict[int, Cell]] = {}
    for c in run.serving:
        if c.ok and batch in (None, c.batch_size):
            here = best.setdefault(c.key, {})
            if c.length_tokens not in here or c.batch_size > here[c.length_tokens].batch_size:
                here[c.length_tokens] = c
    return best


def serving_points(cells: dict[int, Cell]) -> dict[int, Point]:
    return {n: Point(n, "ok", 1, prefill_s=c.prefill_s and c.prefill_s.p50, decode_ms=c.decode_ms_per_tok,
                     prefill_tok_s=c.prefill_tok_s, decode_tok_s=c.decode_tok_s, peak_mem=c.peak_mem_bytes,
                     cost_in_1m=c.cost_usd_per_1m_input, cost_out_1m=c.cost_usd_per_1m_output,
                     unstable=(c.unstable,) if c.unstable else ())
            for n, c in sorted(cells.items())}


def devices_needed(cell: Cell, requests_per_day: int) -> int:
    """Devices that serve `requests_per_day` at this cell's batch: each device takes `batch` requests at a
    time, each request lasting its prefill and decoding."""
    seconds = cell.prefill_s.p50 + (cell.new_tokens or 0) * (cell.decode_ms_per_tok or 0) / 1000.0
    per_device_per_day = 86400.0 * cell.batch_size / seconds
    return max(1, math.ceil(requests_per_day / per_device_per_day))


def beyond_training(run: Run, *models: Model) -> dict[str, list[int]]:
    """Model name -> measured lengths beyond the length it was trained on, for the models that have any."""
    out = {}
    for m in models:
        if m.trained_length:
            longer = sorted({c.length_tokens for c in run.cells if c.key == m.key and c.length_tokens > m.trained_length})
            if longer:
                out[m.name] = longer
    return out


def _accuracy(run: Run, mamba: Model, transformer: Model, length: int | None = None) -> Accuracy | None:
    """Pooled over every clean (noise-free) task variant and length that both models finished (or at the
    one `length`)."""
    by_key: dict[tuple[Variant, int], dict[str, Cell]] = {}
    for cell in run.cells:
        if has_accuracy(cell) and variant(cell).noise_rate == 0 and length in (None, cell.length_tokens):
            by_key.setdefault((variant(cell), cell.length_tokens), {})[cell.key] = cell
    pairs = sorted(k for k, cells in by_key.items() if mamba.key in cells and transformer.key in cells)
    if not pairs:
        return None
    difference = Difference(
        proportion([by_key[k][mamba.key] for k in pairs]),
        proportion([by_key[k][transformer.key] for k in pairs]),
    )
    return Accuracy(difference, tuple(pairs))


def _new_tokens(run: Run) -> int:
    workload = run.config.get("workload") or {}
    from_cells = next((c.new_tokens for c in run.cells if c.new_tokens), 0)
    return int(workload.get("new_tokens") or run.config.get("new_tokens") or from_cells)


def request_cost(point: Point, length: float, new_tokens: int) -> float | None:
    if point.cost_in_1m is None or point.cost_out_1m is None:
        return None
    return (length * point.cost_in_1m + new_tokens * point.cost_out_1m) / 1e6


def interpolate(values: dict[int, float], at: float) -> tuple[float, str, tuple[int, ...]]:
    """Value at `at` from measured lengths: straight line on log-log axes between the two measured lengths
    around it (latency and cost grow roughly as a power of length); outside the measured range, the nearest
    measured length, never an extrapolation."""
    lengths = sorted(values)
    if at in values:
        return values[int(at)], "measured", (int(at),)
    if at < lengths[0] or at > lengths[-1]:
        nearest = lengths[0] if at < lengths[0] else lengths[-1]
        return values[nearest], "nearest", (nearest,)
    hi = next(n for n in lengths if n > at)
    lo = max(n for n in lengths if n < at)
    if values[lo] <= 0 or values[hi] <= 0:
        frac = (at - lo) / (hi - lo)
        return values[lo] + frac * (values[hi] - values[lo]), "interpolated", (lo, hi)
    frac = (math.log(at) - math.log(lo)) / (math.log(hi) - math.log(lo))
    value = math.exp(math.log(values[lo]) + frac * (math.log(values[hi]) - math.log(values[lo])))
    return value, "interpolated", (lo, hi)


def _cost_at(profile_: dict[int, Point], length: int, new_tokens: int, per_day: int | None) -> CostAt | None:
    priced = {n: p for n, p in profile_.items() if p.cost_in_1m is not None and p.cost_out_1m is not None}
    if not priced:
        return None
    in_1m, basis, used = interpolate({n: p.cost_in_1m for n, p in priced.items()}, length)
    out_1m, _, _ = interpolate({n: p.cost_out_1m for n, p in priced.items()}, length)
    per_request = (length * in_1m + new_tokens * out_1m) / 1e6
    per_month = per_request * per_day * DAYS_PER_MONTH if per_day else None
    return CostAt(in_1m, out_1m, per_request, per_month, basis, used)


def _cost(run: Run, pm: dict[int, Point], pt: dict[int, Point], common: list[int], new_tokens: int) -> Cost | None:
    workload = run.config.get("workload") or {}
    length = workload.get("length_tokens")
    from_workload = bool(length)
    if not from_workload:
        if not common:
            return None
        length = common[-1]
    per_day = workload.get("requests_per_day")
    mamba = _cost_at(pm, int(length), new_tokens, per_day)
    transformer = _cost_at(pt, int(length), new_tokens, per_day)
    if mamba is None or transformer is None:
        return None
    return Cost(int(length), new_tokens, per_day, from_workload, mamba, transformer)


def break_even_of(pm: dict[int, Point], pt: dict[int, Point], common: list[int], new_tokens: int) -> BreakEven | None:
    """The length from which Mamba's cost per request stays below the Transformer's up to the longest length
    both ran; the crossing is interpolated on log-length between the measured lengths around it."""
    lengths = [n for n in common if request_cost(pm[n], n, new_tokens) and request_cost(pt[n], n, new_tokens)]
    if not lengths:
        return None
    if len(lengths) == 1:
        return BreakEven("one_length", None, tuple(lengths), new_tokens)
    log_ratio = [math.log(request_cost(pm[n], n, new_tokens) / request_cost(pt[n], n, new_tokens)) for n in lengths]
    not_cheaper = [i for i, r in enumerate(log_ratio) if r >= 0]
    if not not_cheaper:
        return BreakEven("always", None, tuple(lengths), new_tokens)
    last = not_cheaper[-1]
    if last == len(lengths) - 1:
        return BreakEven("never", None, tuple(lengths), new_tokens)
    lo, hi = lengths[last], lengths[last + 1]
    frac = log_ratio[last] / (log_ratio[last] - log_ratio[last + 1])
    at = math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo)))
    return BreakEven("at", at, tuple(lengths), new_tokens)


def calibration_pairs(run: Run, model: Model) -> list[tuple[float, int]]:
    """(confidence, correct) for every answer of the model's clean accuracy cells, at every length."""
    return [
        (float(conf), int(correct))
        for cell in run.cells
        if cell.key == model.key and has_accuracy(cell) and variant(cell).noise_rate == 0
        for conf, correct in (cell.metrics.get("calibration") or [])
    ]


def calibration_of(run: Run, model: Model) -> Calibration:
    """The lowest confidence above which the model's answers reach the target accuracy."""
    pairs = calibration_pairs(run, model)
    if len(pairs) < CALIBRATION_MIN_INSTANCES:
        return Calibration(len(pairs), None, reason="too_few")
    pairs.sort(key=lambda p: -p[0])
    best = None
    correct = 0
    for i, (conf, ok) in enumerate(pairs, 1):
        correct += ok
        # A threshold must take every instance with the same confidence, so only test at the last of a tie.
        if i < len(pairs) and pairs[i][0] == conf:
            continue
        if i >= CALIBRATION_MIN_INSTANCES and correct / i >= CALIBRATION_TARGET:
            best = (conf, i, correct / i)
    if best is None:
        return Calibration(len(pairs), None, reason="not_reached")
    return Calibration(len(pairs), best[0], best[1], best[2])


def _interval(accuracy: Accuracy | None) -> tuple[float | None, float | None]:
    return accuracy.difference.interval if accuracy is not None else (None, None)


def _verdicts_by_length(pm: dict[int, Point], pt: dict[int, Point], accuracy: dict[int, Accuracy | None],
                        pooled: Accuracy | None, new_tokens: int) -> dict[int, str]:
    """The decision at each measured length, from that length's cost per request and runs, and its own
    accuracy where that alone is decisive, else the accuracy pooled over all lengths (one length has
    fewer answers; an accuracy that truly changes with length shows once it is clear)."""
    everywhere = decision.accuracy_class(*_interval(pooled), ACCURACY_MARGIN)
    out = {}
    for n, acc in accuracy.items():
        m, t = pm.get(n), pt.get(n)
        m_ran, t_ran = m is not None and m.status == "ok", t is not None and t.status == "ok"
        cost = decision.cost_class(request_cost(m, n, new_tokens) if m_ran else None,
                                   request_cost(t, n, new_tokens) if t_ran else None)
        here = decision.accuracy_class(*_interval(acc), ACCURACY_MARGIN)
        out[n] = decision.decide(here if here != "unclear" else everywhere, cost, m_ran, t_ran)
    return out


def _at_workload(by_length: dict[int, str], cost: Cost | None) -> tuple[int, str] | None:
    """The measured length that stands for the workload's: its own, else the next longer one (a model
    that failed below the workload length fails at it too), else the longest."""
    if not by_length:
        return None
    target = cost.length if cost is not None else max(by_length)
    n = min((x for x in by_length if x >= target), default=max(by_length))
    return n, by_length[n]


def _recommend(
    accuracy: Accuracy | None,
    cost: Cost | None,
    break_even: BreakEven | None,
    only_mamba: tuple[Point, ...],
    calibration: Calibration,
    by_length: dict[int, str],
) -> Recommendation:
    acc_class = decision.accuracy_class(*_interval(accuracy), ACCURACY_MARGIN)
    cost_class = decision.cost_class(*((cost.mamba.per_request, cost.transformer.per_request) if cost else (None, None)))
    verdict, at_length = decision.decide(acc_class, cost_class), None
    workload = _at_workload(by_length, cost)
    if workload is not None and workload[1] in ("only_mamba", "only_transformer", "neither"):
        at_length, verdict = workload
    settle = None
    if accuracy is not None and acc_class == "unclear":
        d = accuracy.difference
        settle = decision.answers_to_settle(d.mamba.correct, d.mamba.n, d.transformer.correct, d.transformer.n,
                                            ACCURACY_MARGIN)
    conditions = []
    if acc_class == "equivalent" and verdict not in ("keep", "only_transformer", "neither"):
        conditions.append("accuracy_margin")
    if break_even is not None and break_even.kind == "at":
        conditions.append("longer_than_break_even")
    if cost is not None and cost.mamba.basis != "measured":
        conditions.append("measure_workload_length")
    if calibration.threshold is not None:
        conditions.append("review_below_threshold")
    if only_mamba:
        conditions.append("transformer_failed")
    conditions.append("same_device")
    return Recommendation(verdict, tuple(conditions), acc_class, cost_class, at_length, by_length,
                          tuple(decision.bands(by_length)), settle)
