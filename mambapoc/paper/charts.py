"""The paper-style charts, rendered to PNG bytes with matplotlib's Agg canvas (no pyplot state)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mambapoc.paper.evaluate import Curve
from mambapoc.paper.probe import ProbeResult

MODEL_COLOURS = ("#c0392b", "#1f5fa8", "#7d3c98", "#117a65")
BASELINE_COLOURS = ("#222222", "#8c8c8c", "#b9770e", "#16a085", "#6c3483")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _band(ax, curve: Curve, colour: str, label: str, model: bool) -> None:
    sparse = len(curve.x) > 1 and curve.x[1] - curve.x[0] > 1
    ax.plot(curve.x, curve.mean, color=colour, label=label, lw=2.2 if model else 1.3, ls="-" if model else "--",
            marker="o" if sparse else None, ms=3)
    ax.fill_between(curve.x, curve.low, curve.high, color=colour, alpha=0.18 if model else 0.1, lw=0)


def error_chart(curves: dict[str, Curve], model_names: list[str], *, title: str, trained_examples: int,
                small: bool = False) -> bytes:
    """Error against the number of in-context examples; the dotted line is the most examples a
    training prompt had."""
    fig = Figure(figsize=(4.6, 3.2) if small else (7.2, 4.6), dpi=110)
    ax = fig.subplots()
    baseline_colours = iter(BASELINE_COLOURS)
    for k, (name, curve) in enumerate(curves.items()):
        model = name in model_names
        colour = MODEL_COLOURS[k % len(MODEL_COLOURS)] if model else next(baseline_colours)
        _band(ax, curve, colour, name, model)
    ax.axvline(trained_examples, color="k", ls=":", lw=1, label="training length")
    # Least squares and the like spike where examples ~ dimensions; keep the scale on what matters: the
    # zero predictor's level (error at 0 examples) and the models' curves.
    top = max([c.mean[0] for c in curves.values()] + [max(curves[m].mean) for m in model_names])
    ax.set_ylim(0, 1.1 * top)
    ax.set_xlim(0, max(max(c.x) for c in curves.values()))
    ax.set_xlabel("in-context examples")
    ax.set_ylabel("squared error (normalised)")
    ax.set_title(title, fontsize=10 if small else 12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6 if small else 8, loc="upper right")
    return _png(fig)


def probe_chart(result: ProbeResult, title: str) -> bytes:
    """Probe error against layer, next to gradient descent against steps (log scale, as in the paper)."""
    fig = Figure(figsize=(7.2, 4.6), dpi=110)
    ax = fig.subplots()
    for k, (name, curve) in enumerate(result.layers.items()):
        _band(ax, curve, MODEL_COLOURS[k % len(MODEL_COLOURS)], f"{name} (probe)", True)
    gd = result.gradient_descent
    _band(ax, gd, BASELINE_COLOURS[0], f"gradient descent (step {result.step_size:g}/L)", False)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (model) / step (gradient descent)")
    ax.set_ylabel("squared error (normalised), held-out positions")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def loss_chart(histories: dict[str, tuple[int, list[float]]], curriculum_end: int) -> bytes:
    """Training loss, each point a mean over `every` steps; until the dotted line the curriculum is
    still growing the prompts."""
    fig = Figure(figsize=(7.2, 3.6), dpi=110)
    ax = fig.subplots()
    for k, (name, (every, losses)) in enumerate(histories.items()):
        ax.plot((np.arange(len(losses)) + 1) * every, losses, color=MODEL_COLOURS[k % len(MODEL_COLOURS)], label=name)
    ax.axvline(curriculum_end, color="k", ls=":", lw=1, label="curriculum ends")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean squared error)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)
