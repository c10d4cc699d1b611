"""`mambapoc run RECIPE` for recipes of kind `paper-icl`: train (or load) the models, evaluate them
against the baselines, probe them layer by layer, and write the results and the report.

Run directory:
- weights/: what training produced, laid out as a recipe's `weights:` directory expects (settings.json,
  training.json, one checkpoint directory per model), so it can be shipped or reused as is;
- checkpoints/: training state, for --resume;
- results.json (everything), curves.csv, probe.csv, report.html.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from rich.console import Console

from mambapoc.envinfo import pick_device
from mambapoc.errors import UserError
from mambapoc.fsutil import write_atomic
from mambapoc.paper.baselines import baselines_for
from mambapoc.paper.evaluate import evaluate
from mambapoc.paper.models import ICLModel, build_model, load_model, save_model
from mambapoc.paper.probe import ProbeResult, probe
from mambapoc.paper.recipe import PaperRecipe
from mambapoc.paper.report import key_numbers, write_report
from mambapoc.paper.train import train_model
from mambapoc.train.models import count_params

SETTINGS = "settings.json"
TRAINING = "training.json"
LOSS_POINTS = 500  # the loss history kept with the weights, as means over equal runs of steps


def run_paper_recipe(recipe: PaperRecipe, run_dir: Path, resume: bool) -> Path:
    """Returns the report's path."""
    console = Console(stderr=True)
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty: add --resume to continue that run, or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    device = torch.device(pick_device(recipe.device))
    console.print(f"[bold]{recipe.name}[/bold]: {recipe.task.name} functions, d = {recipe.task.n_dims}, "
                  f"{recipe.train_points} points per training prompt, on {device}. Run directory: {run_dir}")

    models, training = _obtain_models(recipe, run_dir, device, console)
    console.print(f"Evaluating on {recipe.eval_prompts} prompts of {recipe.eval_points} points per shift")
    results = evaluate(models, baselines_for(recipe.task), recipe.task, n_points=recipe.eval_points,
                       prompts=recipe.eval_prompts, shifts=recipe.shifts, batch_size=recipe.eval_batch_size,
                       seed=recipe.seed + 1, device=device, console=console)
    console.print(f"Probing layer by layer on {recipe.probe_prompts} prompts of {recipe.train_points} points")
    probed = probe(models, recipe.task, n_points=recipe.train_points, prompts=recipe.probe_prompts,
                   fit_positions=recipe.fit_positions, batch_size=recipe.eval_batch_size, seed=recipe.seed + 2,
                   device=device)
    info = {name: {"family": m.family, "layers": m.num_layers, "parameters": count_params(m)}
            for name, m in models.items()}
    summary = {"recipe": recipe.name, "settings": recipe.training_settings(), "models": info,
               "training": training, "key_numbers": key_numbers(recipe, results),
               "eval": {s: {n: c.to_dict() for n, c in curves.items()} for s, curves in results.items()},
               "probe": probed.to_dict()}
    write_atomic(run_dir / "results.json", json.dumps(summary, indent=1) + "\n")
    write_atomic(run_dir / "curves.csv", _curves_csv(results))
    write_atomic(run_dir / "probe.csv", _probe_csv(probed))
    shipped = recipe.weights if recipe.weights is not None and not recipe.retrain else None  # as _obtain_models
    report = write_report(run_dir / "report.html", recipe, info, training, results, probed, shipped_weights=shipped)
    console.print(f"Results: {run_dir / 'results.json'}, {run_dir / 'curves.csv'}, {run_dir / 'probe.csv'}")
    return report


def _obtain_models(recipe: PaperRecipe, run_dir: Path, device: torch.device,
                   console) -> tuple[dict[str, ICLModel], dict]:
    """The recipe's trained weights when it names them (and retrain is off), else freshly trained models."""
    if recipe.weights is not None and not recipe.retrain:
        return _load_weights(recipe, recipe.weights, device, console)
    out = run_dir / "weights"
    out.mkdir(exist_ok=True)
    write_atomic(out / SETTINGS, json.dumps(recipe.training_settings(), indent=1) + "\n")
    models, training = {}, {}
    for k, (name, spec) in enumerate(recipe.models.items()):
        settings = {key: v for key, v in spec.items() if key != "family"}
        model = build_model(spec["family"], recipe.task.n_dims, settings, seed=recipe.seed + k)
        console.print(f"Training {name} ({spec['family']}, {count_params(model):,} parameters) for "
                      f"{recipe.schedule.steps} steps")
        state = train_model(model, recipe.task, recipe.curriculum, recipe.schedule, seed=recipe.seed,
                            checkpoint=run_dir / "checkpoints" / f"{name}.ckpt", name=name, device=device,
                            console=console)
        save_model(model, out / name)
        every = -(-len(state.losses) // LOSS_POINTS)
        training[name] = {"steps": state.step, "wall_s": round(state.wall_s, 1), "device": str(device),
                          "threads": torch.get_num_threads(), "final_loss": _mean(state.losses[-every:]),
                          "loss_every": every,
                          "losses": [_mean(state.losses[i : i + every]) for i in range(0, len(state.losses), every)]}
        console.print(f"  {name}: {state.step} steps in {state.wall_s:.0f} s, final loss {training[name]['final_loss']:.4f}")
        models[name] = model
    write_atomic(out / TRAINING, json.dumps(training, indent=1) + "\n")
    console.print(f"Trained weights: {out}")
    return models, training


def _load_weights(recipe: PaperRecipe, weights: Path, device: torch.device, console) -> tuple[dict[str, ICLModel], dict]:
    try:
        saved = json.loads((weights / SETTINGS).read_text())
        training = json.loads((weights / TRAINING).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"weights: {weights} holds no readable {SETTINGS} and {TRAINING} ({e}); "
                        "set `retrain: true` to train the models") from None
    differ = [k for k, v in recipe.training_settings().items() if saved.get(k) != v]
    if differ:
        raise UserError(f"weights: {weights} were trained with other {', '.join(differ)} settings than this "
                        "recipe's; set `retrain: true` to train the models")
    console.print(f"Evaluating the trained weights in {weights} (set `retrain: true` in the recipe to train anew)")
    return {name: load_model(weights / name).to(device) for name in recipe.models}, training


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _curves_csv(results) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["shift", "name", "examples", "mean", "low", "high"])
    for shift, curves in results.items():
        for name, c in curves.items():
            w.writerows([shift, name, x, f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}"]
                        for x, m, lo, hi in zip(c.x, c.mean, c.low, c.high, strict=True))
    return buf.getvalue()


def _probe_csv(result: ProbeResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "layer_or_step", "mean", "low", "high", "scale", "shift"])
    for name, c in result.layers.items():
        for x, m, lo, hi, (a, b) in zip(c.x, c.mean, c.low, c.high, result.scale_shift[name], strict=True):
            w.writerow([name, x, f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}", f"{a:.6g}", f"{b:.6g}"])
    gd = result.gradient_descent
    for x, m, lo, hi in zip(gd.x, gd.mean, gd.low, gd.high, strict=True):
        w.writerow(["gradient descent", x, f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}", "", ""])
    return buf.getvalue()
