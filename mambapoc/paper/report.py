"""The run's report: one self-contained HTML page (charts inline as base64 PNG, no external resource),
with the key numbers, what they show, and what the paper found. It is assembled as a report `Document`
and drawn by the report package's HTML writer, which alone escapes the text, with the main report's style."""

from __future__ import annotations

from pathlib import Path

from mambapoc import __version__
from mambapoc.fsutil import write_atomic
from mambapoc.paper.charts import error_chart, loss_chart, probe_chart
from mambapoc.paper.evaluate import Curve
from mambapoc.paper.functions import SHIFTS
from mambapoc.paper.probe import ProbeResult
from mambapoc.paper.recipe import PaperRecipe
from mambapoc.report import html
from mambapoc.report.document import Bullets, Cell, Document, Figure, Paragraph, Section, Table
from mambapoc.report.i18n import Text

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


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _training_time(t: dict) -> str:
    threads = f", {t['threads']} thread{'s' if t['threads'] != 1 else ''}" if t["device"] == "cpu" else ""
    return f"{t['wall_s']:.0f} s ({t['device']}{threads})"


def _row(*texts: str) -> list[Cell]:
    return [Cell(x) for x in texts]


def _shift_words(name: str) -> str:
    """`x*2` → "inputs scaled by 2"."""
    s = SHIFTS[name]
    parts = []
    if s.skewed:
        parts.append("inputs with a skewed covariance")
    if s.x_scale != 1:
        parts.append(f"inputs scaled by {s.x_scale:g}")
    if s.y_scale != 1:
        parts.append(f"labels scaled by {s.y_scale:g}")
    if s.noise_std:
        parts.append(f"Gaussian noise of standard deviation {s.noise_std:g} added to the labels")
    return ", ".join(parts) or "no change"


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
                 results: dict[str, dict[str, Curve]], probed: ProbeResult, *,
                 shipped_weights: Path | None = None) -> Path:
    """`shipped_weights`: the directory of trained weights the run evaluated instead of training; the
    report then says that the training figures are those recorded with them, not this run's."""
    doc = compose(recipe, info, training, results, probed, shipped_weights)
    return write_atomic(path, html.render(doc, Text(doc.lang)))


def compose(recipe: PaperRecipe, info: dict[str, dict], training: dict, results: dict[str, dict[str, Curve]],
            probed: ProbeResult, shipped_weights: Path | None = None) -> Document:
    task, names = recipe.task, list(recipe.models)
    trained = recipe.train_points - 1
    scale = {"sparse": "s", "tree": "1"}.get(task.name, "d")
    title = f"{task.name}, d = {task.n_dims}"

    setup = Section("setup", "Task and models")
    if recipe.description:
        setup.blocks.append(Paragraph(recipe.description))
    setup.blocks.append(Paragraph(
        f"Recipe {recipe.name}. Inputs of dimension d = {task.n_dims} ({task.inputs}); training prompts grow to "
        f"{recipe.train_points} points (curriculum over dimension and points, done at step "
        f"{recipe.curriculum.ends_at}); evaluation on {recipe.eval_prompts} prompts of {recipe.eval_points} points "
        f"per setting. Error: squared error at each query divided by {scale}, mean over prompts with a bootstrap "
        f"5–95 % band; the dotted line in the charts marks the training length (n = {trained})."))
    if shipped_weights is not None:
        setup.blocks.append(Paragraph(
            f"The models were not trained in this run: it evaluates the shipped weights in {shipped_weights.name} "
            "(set “retrain: true” in the recipe to train them anew). Their steps, training time, final loss and "
            "training loss curve are those recorded when those weights were trained, not rerun here.",
            tone="muted"))
    model_rows = [_row(name, i["family"], str(i["layers"]), f"{i['parameters']:,}", str(training[name]["steps"]),
                       _training_time(training[name]), f"{training[name]['final_loss']:.4f}")
                  for name, i in info.items()]
    setup.blocks.append(Table(
        ["model", "family", "layers", "parameters", "steps", "training time", "final loss"], model_rows,
        label_columns=2, caption=None if shipped_weights is None else
        "Steps, training time and final loss: recorded when the shipped weights were trained, not rerun here."))

    labels = list(key_positions(recipe))
    numbers = Section("key-numbers", "Key numbers", [Table(
        ["", *labels], [_row(n, *(_fmt(v[lab]) for lab in labels)) for n, v in key_numbers(recipe, results).items()],
        caption="Mean normalised error on the training distribution after n in-context examples.")])

    error = Section("error", "Error against in-context examples", [Figure(
        error_chart(results["standard"], names, title=title, trained_examples=trained),
        f"Normalised squared error against the number of in-context examples ({title}), models and baselines; "
        f"dotted: training length (n = {trained}).")])
    sections = [setup, numbers, error]

    shifts = [s for s in results if s != "standard"]
    if shifts:
        sections.append(Section("shifts", "Under shifts", [
            Paragraph("The same models and baselines on prompts drawn from changed distributions, which neither "
                      "model saw in training."),
            *(Figure(error_chart(results[s], names, title=s, trained_examples=trained), f"{s}: {_shift_words(s)}.")
              for s in shifts),
        ]))

    depth = len(probed.gradient_descent.mean)
    probe_rows = [[name, *(_fmt(v) for v in c.mean)] for name, c in probed.layers.items()]
    probe_rows.append(["gradient descent", *(_fmt(v) for v in probed.gradient_descent.mean)])
    sections.append(Section("probing", "Probing", [
        Paragraph(f"Read-out of the residual stream after each layer (through the final norm), with a scale and "
                  f"shift per layer fitted by least squares on {recipe.fit_positions} random positions of each of "
                  f"{recipe.probe_prompts} prompts of {recipe.train_points} points; error on the other positions. "
                  f"Gradient descent: a linear model from w = 0 on each query's in-context examples, step size "
                  f"fitted on the same positions. Layer 0 is the read-in's output."),
        Figure(probe_chart(probed, title), "Probe error against layer, next to gradient descent against steps "
                                           "(log scale)."),
        Table(["", *(str(k) for k in range(depth))], [_row(*r, *[""] * (depth + 1 - len(r))) for r in probe_rows],
              caption="Mean error on held-out positions after each layer (models) or step (gradient descent)."),
    ]))

    loss = Figure(loss_chart({n: (training[n]["loss_every"], training[n]["losses"]) for n in names},
                             recipe.curriculum.ends_at),
                  "Training loss, each point a mean over equal runs of steps; dotted: end of the curriculum.")
    sections.append(Section("training", "Training", [loss] if shipped_weights is None else [
        Paragraph("The loss recorded when the shipped weights were trained, not rerun here.", tone="muted"), loss]))
    sections.append(Section("observations", "What this run shows",
                            [Bullets(observations(recipe, results, probed))]))
    sections.append(Section("paper", "What the paper found", [
        Paragraph("Grazzi et al. (2024), “Is Mamba Capable of In-Context Learning?”, at d = 20 with a 12-layer "
                  "Transformer and a 24-layer Mamba trained for 500k steps:"),
        Bullets(list(PAPER_FINDINGS)),
    ]))
    for number, section in enumerate(sections, 1):
        section.number = number
    return Document(
        "en", "Mamba vs Transformer · paper reproduction",
        f"In-context learning of {task.name} functions: {' vs '.join(names)}",
        f"Recipe {recipe.name} · d = {task.n_dims} · after Grazzi et al. (2024), "
        "“Is Mamba Capable of In-Context Learning?”",
        sections,
        f"Generated by mambapoc {__version__} from recipe {recipe.path.name}. Every number comes from this "
        "run's results.json.",
    )
