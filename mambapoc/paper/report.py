"""The run's report: one self-contained HTML page (charts inline as base64 PNG, no external resource),
with the key numbers, what they show, and what the paper found."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from mambapoc.fsutil import write_atomic
from mambapoc.paper.charts import error_chart, loss_chart, probe_chart
from mambapoc.paper.evaluate import Curve
from mambapoc.paper.probe import ProbeResult
from mambapoc.paper.recipe import PaperRecipe

REFERENCE = "least squares"
PAPER_FINDINGS = (
    "Within the training length Mamba matches the Transformer on every function class, and on linear "
    "regression both track least squares (an S4 model, not reproduced here, falls clearly behind).",
    "Past the training length the paper finds the models diverge by class: on linear regression Mamba's error "
    "rises again (a U-shaped curve), more than the Transformer's, while on ReLU networks and decision trees it "
    "stays level or keeps falling.",
    "Probing: for both models the error of the read-out applied to intermediate layers falls steadily with "
    "depth (roughly linearly in log scale on linear regression), as an iterative optimiser's would; on "
    "decision trees Mamba's stays high for the first half of the layers, then drops.",
)


def key_positions(recipe: PaperRecipe) -> dict[str, int]:
    """Labelled numbers of in-context examples for the summary table: d, 2d, the most a training prompt
    had, and the most evaluated."""
    d, trained, last = recipe.task.n_dims, recipe.train_points - 1, recipe.eval_points - 1
    labels: dict[int, list[str]] = {}
    for n, label in ((d, "d"), (2 * d, "2d"), (trained, "training length"), (last, "most evaluated")):
        if n <= last:
            labels.setdefault(n, []).append(label)
    return {f"n = {n} ({', '.join(names)})": n for n, names in sorted(labels.items())}


def key_numbers(recipe: PaperRecipe, results: dict[str, dict[str, Curve]]) -> dict[str, dict[str, float | None]]:
    """{name: {label: mean normalised error}} on the training distribution, for the models and least squares."""
    curves = results["standard"]
    names = [*recipe.models, REFERENCE]
    return {n: {label: curves[n].at(x) for label, x in key_positions(recipe).items()} for n in names if n in curves}


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _training_time(t: dict) -> str:
    threads = f", {t['threads']} thread{'s' if t['threads'] != 1 else ''}" if t["device"] == "cpu" else ""
    return f"{t['wall_s']:.0f} s ({t['device']}{threads})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def observations(recipe: PaperRecipe, results: dict[str, dict[str, Curve]], probed: ProbeResult) -> list[str]:
    """What this run's numbers show, in the terms of the paper's findings."""
    curves = results["standard"]
    trained, last = recipe.train_points - 1, recipe.eval_points - 1
    out = []
    within = ", ".join(f"{n} {_fmt(curves[n].at(trained))}" for n in [*recipe.models, REFERENCE] if n in curves)
    out.append(f"Within the training length (n = {trained}): {within}.")
    for name in recipe.models if last > trained else []:
        c = curves[name]
        at_trained, at_last, best = c.at(trained), c.at(last), min(c.mean[trained + 1 :])
        trend = "rises" if at_last > 1.5 * at_trained + 0.01 else "falls" if at_last < at_trained / 1.5 else "stays level"
        out.append(f"Past it, {name}'s error {trend}: {_fmt(at_trained)} at n = {trained}, {_fmt(at_last)} at "
                   f"n = {last} (lowest beyond training: {_fmt(best)} at n = {c.x[c.mean.index(best)]}).")
    for name, c in probed.layers.items():
        falls = sum(b < a for a, b in zip(c.mean, c.mean[1:], strict=False))
        out.append(f"Probe, {name}: {_fmt(c.mean[0])} at the read-in, {_fmt(c.mean[-1])} after layer {c.x[-1]}; "
                   f"lower than the layer before at {falls} of {len(c.mean) - 1} layers.")
    gd = probed.gradient_descent
    out.append(f"Gradient descent (step {probed.step_size:g}/L): {_fmt(gd.mean[1])} after 1 step, "
               f"{_fmt(gd.mean[-1])} after {gd.x[-1]}.")
    return out


def write_report(path: Path, recipe: PaperRecipe, info: dict[str, dict], training: dict,
                 results: dict[str, dict[str, Curve]], probed: ProbeResult) -> Path:
    task, names = recipe.task, list(recipe.models)
    trained = recipe.train_points - 1
    scale = {"sparse": "s", "tree": "1"}.get(task.name, "d")
    numbers = key_numbers(recipe, results)
    labels = list(key_positions(recipe))
    model_rows = [[name, i["family"], str(i["layers"]), f"{i['parameters']:,}", str(training[name]["steps"]),
                   _training_time(training[name]),
                   f"{training[name]['final_loss']:.4f}"] for name, i in info.items()]
    probe_rows = [[name, *(_fmt(v) for v in c.mean)] for name, c in probed.layers.items()]
    probe_rows.append(["gradient descent", *(_fmt(v) for v in probed.gradient_descent.mean)])
    depth = len(probed.gradient_descent.mean)
    shifts = [s for s in results if s != "standard"]
    parts = [
        f"<h1>In-context learning of {escape(task.name)} functions: {escape(' vs '.join(names))}</h1>",
        f"<p>{escape(recipe.description)}</p>" if recipe.description else "",
        f"<p>Recipe <code>{escape(recipe.name)}</code>. Inputs of dimension d = {task.n_dims} ({escape(task.inputs)}); "
        f"training prompts grow to {recipe.train_points} points (curriculum over dimension and points, done at "
        f"step {recipe.curriculum.ends_at}); evaluation on {recipe.eval_prompts} prompts of {recipe.eval_points} "
        f"points per setting. Error: squared error at each query divided by {scale}, mean over prompts with a "
        f"bootstrap 5–95 % band; the dotted line marks the training length (n = {trained}).</p>",
        "<h2>Models</h2>",
        _table(["model", "family", "layers", "parameters", "steps", "training time", "final loss"], model_rows),
        "<h2>Key numbers</h2>",
        _table(["", *labels], [[n, *(_fmt(v[lab]) for lab in labels)] for n, v in numbers.items()]),
        "<h2>Error against in-context examples</h2>",
        _img(error_chart(results["standard"], names, title=f"{task.name}, d = {task.n_dims}",
                         trained_examples=trained), "error against in-context examples"),
    ]
    if shifts:
        parts += ["<h2>Under shifts</h2>", '<div class="grid">']
        parts += [_img(error_chart(results[s], names, title=s, trained_examples=trained, small=True), s) for s in shifts]
        parts.append("</div>")
    parts += [
        "<h2>Probing</h2>",
        f"<p>Read-out of the residual stream after each layer (through the final norm), with a scale and shift "
        f"per layer fitted by least squares on {recipe.fit_positions} random positions of each of "
        f"{recipe.probe_prompts} prompts of {recipe.train_points} points; error on the other positions. "
        f"Gradient descent: a linear model from w = 0 on each query's in-context examples, step size fitted on "
        f"the same positions. Layer 0 is the read-in's output.</p>",
        _img(probe_chart(probed, f"{task.name}, d = {task.n_dims}"), "probe error against layer"),
        _table(["", *(str(k) for k in range(depth))], [r + [""] * (depth + 1 - len(r)) for r in probe_rows]),
        "<h2>Training</h2>",
        _img(loss_chart({n: (training[n]["loss_every"], training[n]["losses"]) for n in names},
                        recipe.curriculum.ends_at), "training loss"),
        "<h2>What this run shows</h2>",
        "<ul>" + "".join(f"<li>{escape(o)}</li>" for o in observations(recipe, results, probed)) + "</ul>",
        "<h2>What the paper found</h2>",
        "<p>Grazzi et al. (2024), <i>Is Mamba Capable of In-Context Learning?</i>, at d = 20 with a 12-layer "
        "Transformer and a 24-layer Mamba trained for 500k steps:</p>",
        "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in PAPER_FINDINGS) + "</ul>",
    ]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             ".grid{display:flex;flex-wrap:wrap;gap:8px}.grid img{width:32%}")
    html = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(recipe.name)}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")
    write_atomic(path, html)
    return path
