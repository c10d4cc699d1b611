"""Charts as PNG bytes, drawn with matplotlib's object API (no pyplot, so no global figure state).

Fonts are set inside an `rc_context` around each chart, so a Japanese report changes nothing for other
matplotlib users in the same process. A cell that failed is drawn as a cross at the edge of the axes with
its status (OOM, TIMEOUT), never as a zero or a gap.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from mambapoc.models.footprint import CARDS, Footprint
from mambapoc.report import fmt
from mambapoc.report.findings import CALIBRATION_TARGET, Findings, Point, request_cost, serving_points, wilson
from mambapoc.report.fonts import japanese_font, matplotlib_family
from mambapoc.report.i18n import Text
from mambapoc.report.load import Model, Run, Variant, variant
from mambapoc.results import Cell

DPI = 170
WIDE = (7.6, 3.1)
_FAMILY_COLOURS = {
    "mamba": ("#0f766e", "#14b8a6", "#115e59"),
    "mamba2": ("#0369a1", "#38bdf8", "#075985"),
    "hybrid": ("#7c3aed", "#a78bfa", "#5b21b6"),
    "transformer": ("#c2410c", "#f59e0b", "#9a3412"),
}
_STATE_KIND = {"mamba": "chart_ssm_state", "mamba2": "chart_ssm_state", "hybrid": "chart_hybrid_cache"}
_OTHER_COLOURS = ("#4338ca", "#6b7280", "#be185d")
_FAILED = "#b91c1c"
_MIN_SPAN = 2.5  # the smallest ratio between the top and the bottom of a log axis


def colours(models: list[Model]) -> dict[str, str]:
    """Mamba models in greens, Mamba-2 in blues, hybrids in purples, Transformers in oranges, stable across
    every chart of a report."""
    seen: dict[str, int] = {}
    out = {}
    for m in models:
        palette = _FAMILY_COLOURS.get(m.family, _OTHER_COLOURS)
        out[m.key] = palette[seen.get(m.family, 0) % len(palette)]
        seen[m.family] = seen.get(m.family, 0) + 1
    return out


def _rc(lang: str) -> dict:
    families = ["DejaVu Sans"]
    font = japanese_font() if lang == "ja" else None
    if font is not None:
        # The Japanese font first; DejaVu fills in symbols it lacks (≥, ×).
        families.insert(0, matplotlib_family(font))
    return {
        "font.family": families,
        "font.size": 8.5,
        "axes.titlesize": 9,
        "axes.labelsize": 8.5,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e5e7eb",
        "grid.linewidth": 0.6,
        "legend.fontsize": 7.5,
        "legend.frameon": False,
        "axes.unicode_minus": font is None,
    }


@contextmanager
def _figure(lang: str, size: tuple[float, float] = WIDE, **subplots) -> Iterator[tuple[Figure, list]]:
    """Yields a figure and its axes; the PNG is written by `png()` inside the same font settings."""
    with matplotlib.rc_context(_rc(lang)):
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(squeeze=False, **subplots).ravel().tolist()
        yield fig, axes


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _length_axis(ax, lengths: list[int], label: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([fmt.tokens(n) for n in lengths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(label)
    pad = 2**0.35
    ax.set_xlim(min(lengths) / pad, max(lengths) * pad)


def _mark_failed(ax, length: float, label: str, colour: str, top: bool = True) -> None:
    """A failed cell: a cross on the edge of the plot at its length, labelled with its status."""
    y = 0.97 if top else 0.03
    ax.plot([length], [y], marker="x", color=colour, markersize=7, mew=2,
            transform=ax.get_xaxis_transform(), clip_on=False, linestyle="none")
    ax.annotate(label, (length, y), xycoords=ax.get_xaxis_transform(), xytext=(6, 0),
                textcoords="offset points", va="center", fontsize=7, color=_FAILED)


def _series(ax, points: dict[int, Point], value: Callable[[Point], float | None], colour: str, label: str,
            t: Text) -> None:
    ok = [(n, value(p)) for n, p in points.items() if p.status == "ok" and value(p) is not None]
    if ok:
        ax.plot(*zip(*ok, strict=True), marker="o", markersize=4, color=colour, label=label)
    for n, p in points.items():
        if p.status != "ok":
            _mark_failed(ax, n, t.status(p.status), colour)


def _log_y(ax, show: Callable[[float], str], base: int = 10) -> None:
    """Log scale with ticks labelled in the quantity's own units (20 ms, 16 MiB, $0.0001), not powers of
    ten; at 1, 2 and 5 per decade, or closer where the data spans less than a decade."""
    ax.set_yscale("log", base=base)
    lo, hi = ax.get_ylim()
    if hi / lo < _MIN_SPAN:
        # A nearly flat series keeps a span around it: stretched over the whole axis, a 2 % wobble would
        # look like a trend.
        centre = (lo * hi) ** 0.5
        lo, hi = centre / _MIN_SPAN**0.5, centre * _MIN_SPAN**0.5
        ax.set_ylim(lo, hi)
    if base != 10:
        locator = LogLocator(base=base, numticks=7)
    elif hi / lo >= 10:
        locator = LogLocator(base=10, subs=(1.0, 2.0, 5.0))
    elif hi / lo >= 3:
        locator = LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    else:
        locator = LogLocator(base=10, subs=(1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0))
    ax.yaxis.set_major_locator(locator)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: show(v)))


def _figure_legend(fig: Figure, axes: list) -> None:
    """One legend above all panels, so that it hides no data."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside upper center", ncols=min(4, len(seen)))


def _all_lengths(run: Run) -> list[int]:
    return sorted({c.length_tokens for c in run.cells})


def speed(run: Run, findings: Findings, t: Text) -> bytes:
    col = colours(run.models)
    with _figure(t.lang, ncols=2) as (fig, (prefill, decode)):
        for m in run.models:
            points = findings.profiles[m.key]
            _series(prefill, points, lambda p: p.prefill_s, col[m.key], m.name, t)
            _series(decode, points, lambda p: p.decode_ms, col[m.key], m.name, t)
        for ax, title, show in ((prefill, t("chart_prefill_title"), fmt.seconds),
                                (decode, t("chart_decode_title"), fmt.ms)):
            _log_y(ax, show)
            ax.set_title(title, loc="left")
            _length_axis(ax, _all_lengths(run), t("chart_context_length"))
        _figure_legend(fig, [prefill, decode])
        return png(fig)


def memory(run: Run, findings: Findings, t: Text) -> bytes:
    col = colours(run.models)
    with _figure(t.lang, size=(7.6, 3.4)) as (fig, (ax,)):
        for m in run.models:
            points = findings.profiles[m.key]
            _series(ax, points, lambda p: p.peak_mem, col[m.key], t("chart_peak_memory_of", model=m.name), t)
            state = [(n, p.state_bytes) for n, p in points.items() if p.state_bytes]
            if state:
                kind = t(_STATE_KIND.get(m.family, "chart_kv_cache"))
                ax.plot(*zip(*state, strict=True), linestyle="--", marker=".", color=col[m.key],
                        label=f"{kind}: {m.name}")
        _log_y(ax, fmt.size, base=2)
        ax.set_title(t("chart_memory_title"), loc="left")
        _length_axis(ax, _all_lengths(run), t("chart_context_length"))
        ax.legend(loc="upper left", ncols=2)
        return png(fig)


def accuracy(run: Run, variants: list[Variant], t: Text) -> bytes:
    """One panel per clean task variant: accuracy with its 95 % interval (bits per byte for continuation)."""
    col = colours(run.models)
    ncols = min(3, len(variants))
    nrows = -(-len(variants) // ncols)
    with _figure(t.lang, size=(7.6, 2.7 * nrows), nrows=nrows, ncols=ncols) as (fig, axes):
        for ax, v in zip(axes, variants, strict=False):
            is_accuracy = any(c.metrics and "accuracy" in c.metrics for c in _cells_of(run, v))
            chance = None
            for m in run.models:
                cells = {c.length_tokens: c for c in _cells_of(run, v) if c.key == m.key}
                xs, ys, err = [], [], [[], []]
                for n, c in sorted(cells.items()):
                    if not c.ok:
                        _mark_failed(ax, n, t.status(c.status), col[m.key], top=not is_accuracy)
                        continue
                    metrics = c.metrics
                    y = metrics.get("accuracy") if is_accuracy else metrics.get("bits_per_byte")
                    if y is None:
                        continue
                    xs.append(n)
                    ys.append(y)
                    lo, hi = _interval(metrics, is_accuracy)
                    err[0].append(max(0.0, y - lo))
                    err[1].append(max(0.0, hi - y))
                    chance = metrics.get("chance", chance)
                if xs:
                    ax.errorbar(xs, ys, yerr=err, marker="o", markersize=4, capsize=2.5, color=col[m.key],
                                label=m.name)
            if is_accuracy:
                ax.set_ylim(-0.02, 1.05)
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0%}"))
                if chance:
                    ax.axhline(chance, color="#9ca3af", linestyle=":", linewidth=1)
                    ax.annotate(t("chart_chance"), (1.0, chance), xycoords=("axes fraction", "data"),
                                ha="right", va="bottom", fontsize=7, color="#6b7280")
            else:
                ax.set_ylabel(t("chart_bits_per_byte"))
            ax.set_title(t.variant(v), loc="left")
            _length_axis(ax, _all_lengths(run), t("chart_context_length"))
        for ax in axes[len(variants):]:
            ax.set_visible(False)
        _figure_legend(fig, axes)
        return png(fig)


def _interval(metrics: dict, is_accuracy: bool) -> tuple[float, float]:
    """The cell's own 95 % interval (Wilson for accuracy, bootstrap for bits per byte), else Wilson from
    its counts; a bits-per-byte value without one gets no error bar."""
    if metrics.get("ci95"):
        return tuple(metrics["ci95"])
    if not is_accuracy:
        return (metrics["bits_per_byte"], metrics["bits_per_byte"])
    n = int(metrics["n"])
    return wilson(round(metrics["accuracy"] * n), n)


def _cells_of(run: Run, v: Variant) -> list[Cell]:
    return [c for c in run.cells if variant(c) == v]


def needle_heatmap(run: Run, v: Variant, t: Text) -> bytes:
    """Accuracy by needle depth (rows) and context length (columns), one panel per model."""
    lengths = sorted({c.length_tokens for c in _cells_of(run, v)})
    # Depths are the percentages as the task wrote them ("0", "12.5", "100"): sorted by value, looked up as text.
    depths = sorted({d for c in _cells_of(run, v) for d in (c.metrics.get("by_depth") or {})},
                    key=float)
    models = [m for m in run.models if any(c.key == m.key for c in _cells_of(run, v))]
    with _figure(t.lang, size=(7.6, 0.5 + 0.42 * max(3, len(depths))), ncols=len(models)) as (fig, axes):
        for ax, m in zip(axes, models, strict=True):
            cells = {c.length_tokens: c for c in _cells_of(run, v) if c.key == m.key}
            grid = [[float("nan")] * len(lengths) for _ in depths]
            for j, n in enumerate(lengths):
                c = cells.get(n)
                by_depth = (c.metrics.get("by_depth") if c is not None else None) or {}
                for i, d in enumerate(depths):
                    if c is not None and c.ok and d in by_depth:
                        grid[i][j] = float(by_depth[d])
            image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
            for j, n in enumerate(lengths):
                c = cells.get(n)
                for i in range(len(depths)):
                    value = grid[i][j]
                    if value == value:
                        # White on the dark ends of the colour scale, black in the pale middle.
                        ink = "white" if value >= 0.8 or value <= 0.15 else "black"
                        ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7, color=ink)
                if c is not None and not c.ok:
                    ax.text(j, (len(depths) - 1) / 2, t.status(c.status), ha="center", va="center",
                            fontsize=8, color=_FAILED)
            ax.set_xticks(range(len(lengths)), [fmt.tokens(n) for n in lengths])
            ax.set_yticks(range(len(depths)), [f"{d}%" for d in depths])
            ax.set_xlabel(t("chart_context_length"))
            ax.set_ylabel(t("chart_needle_depth"))
            ax.set_title(m.name, loc="left")
            ax.grid(False)
            ax.set_facecolor("#f3f4f6")
        fig.colorbar(image, ax=axes, shrink=0.9, format=FuncFormatter(lambda y, _: f"{y:.0%}"),
                     label=t("chart_accuracy"))
        return png(fig)


def calibration(run: Run, findings: Findings, pairs: dict[str, list[tuple[float, int]]], t: Text) -> bytes:
    """Reliability diagram: observed accuracy per confidence bin (dot area ∝ instances), with the
    suggested review threshold of the Mamba model."""
    col = colours(run.models)
    edges = [i / 10 for i in range(11)]
    with _figure(t.lang, size=(7.6, 3.4)) as (fig, (ax,)):
        ax.plot([0, 1], [0, 1], linestyle="--", color="#9ca3af", linewidth=1, label=t("chart_perfect_calibration"))
        for m in run.models:
            data = pairs.get(m.key) or []
            xs, ys, sizes = [], [], []
            for lo, hi in zip(edges, edges[1:], strict=False):
                inside = [ok for conf, ok in data if lo <= conf < hi or (hi == 1 and conf == 1)]
                if inside:
                    xs.append((lo + hi) / 2)
                    ys.append(sum(inside) / len(inside))
                    sizes.append(8 + 120 * len(inside) / len(data))
            if xs:
                ax.plot(xs, ys, color=col[m.key], linewidth=1.2, label=m.name)
                ax.scatter(xs, ys, s=sizes, color=col[m.key], alpha=0.8, zorder=3)
        mamba = findings.mamba
        threshold = findings.calibration[mamba.key].threshold if mamba else None
        if threshold is not None:
            ax.axvspan(0, threshold, color="#fef3c7", alpha=0.6, zorder=0)
            ax.axvline(threshold, color=col[mamba.key], linestyle=":", linewidth=1.5)
            ax.annotate(t("chart_review_below", threshold=fmt.plain(threshold)), (threshold, 0.04),
                        xytext=(-4, 0), textcoords="offset points", ha="right", fontsize=7.5)
            ax.annotate(t("chart_automate_above", target=fmt.percent(CALIBRATION_TARGET)), (threshold, 0.04),
                        xytext=(4, 0), textcoords="offset points", ha="left", fontsize=7.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.03)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.1f}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0%}"))
        ax.set_xlabel(t("chart_confidence"))
        ax.set_ylabel(t("chart_observed_accuracy"))
        ax.set_title(t("chart_calibration_title"), loc="left")
        ax.legend(loc="upper left")
        return png(fig)


def noise(run: Run, noisy: list[Variant], t: Text) -> bytes:
    """Accuracy with and without noise in the context, per task variant."""
    col = colours(run.models)
    with _figure(t.lang, ncols=len(noisy)) as (fig, axes):
        for ax, v in zip(axes, noisy, strict=True):
            for m in run.models:
                for which, style, suffix in ((v.clean, "-", ""), (v, "--", t("chart_noisy_suffix",
                                                                           rate=f"{v.noise_rate:.0%}"))):
                    points = {c.length_tokens: c for c in _cells_of(run, which) if c.key == m.key}
                    ok = sorted((n, c.metrics["accuracy"]) for n, c in points.items()
                                if c.ok and c.metrics.get("accuracy") is not None)
                    if ok:
                        ax.plot(*zip(*ok, strict=True), linestyle=style, marker="o", markersize=4,
                                color=col[m.key], label=m.name + suffix)
                    for n, c in points.items():
                        if not c.ok:
                            _mark_failed(ax, n, t.status(c.status), col[m.key], top=False)
            ax.set_ylim(-0.02, 1.05)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0%}"))
            ax.set_title(t.variant(v.clean), loc="left")
            _length_axis(ax, _all_lengths(run), t("chart_context_length"))
            ax.legend(loc="lower left")
        return png(fig)


def loss_by_position(run: Run, curves: dict[str, list[tuple[float, float]]], t: Text) -> bytes:
    """Loss at each position of the longest continuation prompt, with each model's trained length."""
    col = colours(run.models)
    with _figure(t.lang, size=(7.6, 3.2)) as (fig, (ax,)):
        for m in run.models:
            curve = curves.get(m.key)
            if not curve:
                continue
            ax.plot(*zip(*curve, strict=True), marker=".", color=col[m.key], label=m.name)
        # Models that share a trained length share one marker line, so their labels do not overprint.
        trained: dict[int, list[str]] = {}
        for m in run.models:
            if m.trained_length and m.key in curves:
                trained.setdefault(m.trained_length, []).append(m.name)
        for length, names in trained.items():
            ax.axvline(length, color="#374151", linestyle=":", linewidth=1.2)
            ax.annotate(t("chart_trained_length", model=", ".join(names)), (length, 0.97),
                        xycoords=ax.get_xaxis_transform(), xytext=(-4, 0), textcoords="offset points",
                        va="top", ha="right", fontsize=7, color="#374151")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.tokens(v)))
        ax.set_xlabel(t("chart_position"))
        ax.set_ylabel(t("chart_loss"))
        ax.set_title(t("chart_loss_title"), loc="left")
        ax.legend(loc="upper left")
        return png(fig)


def cost(run: Run, findings: Findings, t: Text) -> bytes:
    """Cost per request against length, with the break-even and the workload length marked."""
    col = colours(run.models)
    new_tokens = findings.break_even.new_tokens if findings.break_even else findings.cost.new_tokens
    with _figure(t.lang, size=(7.6, 3.3)) as (fig, (ax,)):
        for m in run.models:
            points = findings.profiles[m.key]
            _series(ax, points, lambda p: request_cost(p, p.length, new_tokens), col[m.key], m.name, t)
            serving = serving_points(findings.serving.get(m.key, {}))
            cost = [(n, request_cost(p, n, new_tokens)) for n, p in serving.items()]
            if cost:
                ax.plot(*zip(*cost, strict=True), linestyle="--", marker="s", markersize=3, color=col[m.key],
                        label=t("chart_at_capacity", model=m.name))
        be = findings.break_even
        if be is not None and be.kind == "at":
            ax.axvline(be.length, color="#111827", linestyle=":", linewidth=1.2)
            ax.annotate(t("chart_break_even", length=fmt.tokens(be.length)), (be.length, 0.97),
                        xycoords=ax.get_xaxis_transform(), xytext=(4, 0), textcoords="offset points",
                        va="top", fontsize=7.5)
        c = findings.cost
        if c is not None and c.from_workload:
            for m, at in ((findings.mamba, c.mamba), (findings.transformer, c.transformer)):
                ax.plot([c.length], [at.per_request], marker="D", markersize=6, markerfacecolor="white",
                        color=col[m.key], linestyle="none")
            ax.axvline(c.length, color="#6b7280", linestyle="--", linewidth=0.8)
            ax.annotate(t("chart_workload", length=fmt.tokens(c.length)), (c.length, 0.03),
                        xycoords=ax.get_xaxis_transform(), xytext=(4, 0), textcoords="offset points",
                        fontsize=7.5, color="#374151")
        _log_y(ax, fmt.usd)
        ax.set_ylabel(t("chart_usd_per_request", new_tokens=new_tokens))
        ax.set_title(t("chart_cost_title"), loc="left")
        _length_axis(ax, _all_lengths(run), t("chart_context_length"))
        ax.legend(loc="upper left")
        return png(fig)


def capacity(run: Run, findings: Findings, t: Text) -> bytes:
    """Requests served at once, and decode tokens per second over all of them, against length."""
    col = colours(run.models)
    lengths = sorted({n for cells in findings.serving.values() for n in cells})
    with _figure(t.lang, ncols=2) as (fig, (batch, rate)):
        for m in run.models:
            cells = findings.serving.get(m.key, {})
            if cells:
                ns = sorted(cells)
                batch.plot(ns, [cells[n].batch_size for n in ns], marker="o", markersize=4, color=col[m.key],
                           label=m.name)
                rate.plot(ns, [cells[n].decode_tok_s for n in ns], marker="o", markersize=4, color=col[m.key],
                          label=m.name)
        for ax, title, show in ((batch, t("chart_batch_title"), fmt.count), (rate, t("chart_rate_title"), fmt.rate)):
            _log_y(ax, show, base=2 if ax is batch else 10)
            ax.set_title(title, loc="left")
            _length_axis(ax, lengths, t("chart_context_length"))
        _figure_legend(fig, [batch, rate])
        return png(fig)


def projection(models: list[Model], t: Text) -> bytes:
    """Requests that fit on an 80 GB card beside the weights, against length: computed, not measured."""
    col = colours(models)
    lengths = [2**k for k in range(10, 18)]
    with _figure(t.lang, size=(7.6, 3.2)) as (fig, (ax,)):
        for m in models:
            fp = Footprint(**m.footprint)
            fits = [(n, fp.fits(CARDS["80GB"], n)) for n in lengths if fp.fits(CARDS["80GB"], n) > 0]
            if fits:
                ax.plot(*zip(*fits, strict=True), marker="o", markersize=3, linestyle="--", color=col[m.key],
                        label=m.name)
        _log_y(ax, fmt.count, base=2)
        ax.set_title(t("chart_projection_title"), loc="left")
        _length_axis(ax, lengths, t("chart_context_length"))
        ax.legend(loc="upper right")
        return png(fig)
