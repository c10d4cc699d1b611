"""The recommendation as a decision table: accuracy × cost at the workload × which models could run.

Accuracy (Mamba minus Transformer, with its 95 % interval [lo, hi], margin m):
- better: lo > 0 (Mamba is surely more accurate);
- worse: hi < -m (Mamba surely loses more than the margin);
- equivalent: lo >= -m otherwise (no material loss, no sure gain);
- unclear: lo < -m <= hi (a material loss is possible, not established).

Cost (Mamba's against the Transformer's, per month at the workload or per request): similar within
`COST_BAND` of the dearer one, else cheaper or dearer; unknown when either was not priced.

Feasibility overrides both: a length at which only one model ran (the other ran out of memory or time) is
that model's, and one where neither ran is nobody's. Significantly worse accuracy is never outweighed
by cost. docs/report.md carries the same table; tests check every cell of it.
"""

from __future__ import annotations

from dataclasses import dataclass

COST_BAND = 0.10
ACCURACY = ("better", "equivalent", "worse", "unclear")
COST = ("cheaper", "similar", "dearer", "unknown")
TABLE: dict[tuple[str, str], str] = {
    ("better", "cheaper"): "switch",
    ("better", "similar"): "switch",
    ("better", "dearer"): "trade_off",
    ("better", "unknown"): "switch",
    ("equivalent", "cheaper"): "switch",
    ("equivalent", "similar"): "either",
    ("equivalent", "dearer"): "keep",
    ("equivalent", "unknown"): "either",
    ("worse", "cheaper"): "keep",
    ("worse", "similar"): "keep",
    ("worse", "dearer"): "keep",
    ("worse", "unknown"): "keep",
    **{("unclear", c): "more_evidence" for c in COST},
}
# Which model a verdict runs, for length bands: the same model in neighbouring bands is one band.
RUNS = {"switch": "mamba", "trade_off": "trade_off", "either": "either", "keep": "transformer",
        "more_evidence": "unknown", "only_mamba": "mamba", "only_transformer": "transformer", "neither": "none"}


def accuracy_class(lo: float | None, hi: float | None, margin: float) -> str:
    if lo is None or hi is None:
        return "unclear"
    if lo > 0:
        return "better"
    if hi < -margin:
        return "worse"
    if lo >= -margin:
        return "equivalent"
    return "unclear"


def cost_class(mamba: float | None, transformer: float | None) -> str:
    if not mamba or not transformer:
        return "unknown"
    if abs(mamba - transformer) <= COST_BAND * max(mamba, transformer):
        return "similar"
    return "cheaper" if mamba < transformer else "dearer"


def decide(accuracy: str, cost: str, mamba_ran: bool = True, transformer_ran: bool = True) -> str:
    if not mamba_ran and not transformer_ran:
        return "neither"
    if not transformer_ran:
        return "only_mamba"
    if not mamba_ran:
        return "only_transformer"
    return TABLE[(accuracy, cost)]


@dataclass(frozen=True)
class Band:
    """Consecutive measured lengths with the same answer."""

    verdict: str
    lengths: tuple[int, ...]


def bands(by_length: dict[int, str]) -> list[Band]:
    """Group lengths (ascending) whose verdicts run the same model."""
    out: list[Band] = []
    for n in sorted(by_length):
        v = by_length[n]
        if out and RUNS[out[-1].verdict] == RUNS[v]:
            out[-1] = Band(out[-1].verdict, (*out[-1].lengths, n))
        else:
            out.append(Band(v, (n,)))
    return out


def answers_to_settle(correct_m: int, n_m: int, correct_t: int, n_t: int, margin: float) -> int | None:
    """About how many answers per model would narrow the interval enough to tell the observed difference
    from the margin (the interval shrinks as 1/sqrt(n)); None when the difference sits on the margin."""
    if not n_m or not n_t:
        return None
    p_m, p_t = correct_m / n_m, correct_t / n_t
    d = p_m - p_t
    distance = abs(d + margin)
    if distance < 0.005:
        return None
    sd = (p_m * (1 - p_m) + p_t * (1 - p_t)) ** 0.5 or 0.5
    needed = (1.96 * sd / distance) ** 2
    return max(int(needed) + 1, max(n_m, n_t) + 1)
