"""Layer-wise probing: does the prediction improve layer by layer, as in an iterative optimiser?

The residual stream at the input and after each layer goes through the model's final norm and its
read-out. A scale and a shift per layer, fitted by least squares on `fit_positions` validation
positions of every prompt (drawn at random per prompt), turn that into a prediction, and its error is
measured at the prompt's other positions.

Next to it, gradient descent on each prompt's in-context examples, for a linear model started at
w = 0, one step per layer: its error after k steps is what an optimiser gets in k iterations. Its one
hyperparameter, the step size, is fitted on the same validation positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mambapoc.paper.evaluate import Curve, batched, bootstrap_curve
from mambapoc.paper.functions import Task, sample_prompts
from mambapoc.paper.models import ICLModel

# Multiples of 1/L, L the curvature of the least-squares loss; past 2 gradient descent diverges.
STEP_SIZES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclass
class ProbeResult:
    layers: dict[str, Curve]  # per model: error against layer (0 = the read-in's output)
    scale_shift: dict[str, list[tuple[float, float]]]  # per model and layer
    gradient_descent: Curve  # error against steps
    step_size: float  # the fitted multiple of 1/L

    def to_dict(self) -> dict:
        return {"layers": {k: c.to_dict() for k, c in self.layers.items()}, "scale_shift": self.scale_shift,
                "gradient_descent": self.gradient_descent.to_dict(), "step_size": self.step_size}


def fit_scale_shift(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(a, b) minimising |a pred + b - target|^2 over all elements."""
    design = torch.stack([pred.flatten(), torch.ones_like(pred.flatten())], dim=1).double()
    solution = torch.linalg.lstsq(design, target.flatten().double()[:, None], driver="gelsd").solution
    return float(solution[0, 0]), float(solution[1, 0])


def validation_mask(prompts: int, n_points: int, fit_positions: int, generator: torch.Generator) -> torch.Tensor:
    """(prompts, n_points) bool: `fit_positions` random positions of each prompt."""
    order = torch.rand(prompts, n_points, generator=generator).argsort(dim=1)
    mask = torch.zeros(prompts, n_points, dtype=torch.bool)
    mask.scatter_(1, order[:, :fit_positions], True)
    return mask


def gradient_descent(xs: torch.Tensor, ys: torch.Tensor, steps: int, step_size: float) -> torch.Tensor:
    """Predictions (steps + 1, prompts, n) of w_k at each position, where w_0 = 0 and
    w_{k+1} = w_k - (step_size / L) grad, on the loss |Xw - y|^2 / 2i of the i examples before the
    position; L is the largest eigenvalue of X'X / i, so the same step size suits every i."""
    x, y = xs.double(), ys.double()
    outer = x[..., :, None] * x[..., None, :]
    count = torch.arange(x.shape[1], dtype=torch.float64).clamp_min(1)[None, :, None]
    gram = (outer.cumsum(1) - outer) / count[..., None]  # examples strictly before each position
    corr = ((x * y[..., None]).cumsum(1) - x * y[..., None]) / count
    rate = step_size / torch.linalg.eigvalsh(gram)[..., -1:].clamp_min(1e-12)
    w = torch.zeros_like(corr)
    preds = [torch.zeros_like(y)]
    for _ in range(steps):
        w = w - rate * ((gram @ w[..., None])[..., 0] - corr)
        preds.append((x * w).sum(-1))
    return torch.stack(preds)


def _held_out_errors(preds: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, scale: float) -> torch.Tensor:
    """Per prompt, mean squared error / scale over the positions not in `fit`: (prompts,)."""
    held = ~fit
    return ((preds - y).square() * held).sum(1) / held.sum(1) / scale


def probe(models: dict[str, ICLModel], task: Task, *, n_points: int, prompts: int, fit_positions: int,
          batch_size: int, seed: int, device: torch.device) -> ProbeResult:
    generator = torch.Generator().manual_seed(seed)
    xs, ys = sample_prompts(task, n_points, prompts, generator)
    fit = validation_mask(prompts, n_points, fit_positions, generator)
    y = ys.double()
    layers, scale_shift = {}, {}
    for name, model in models.items():
        preds = batched(model.layer_predictions, xs, ys, batch_size, device, dim=1).double()
        coefs = [fit_scale_shift(p[fit], y[fit]) for p in preds]
        errors = torch.stack([_held_out_errors(a * p + b, y, fit, task.error_scale)
                              for (a, b), p in zip(coefs, preds, strict=True)], dim=1)
        layers[name] = bootstrap_curve(errors.numpy(), list(range(len(preds))))
        scale_shift[name] = coefs
    steps = max(m.num_layers for m in models.values())

    def fit_error(step_size: float) -> float:
        final = gradient_descent(xs, ys, steps, step_size)[-1]
        return float(((final - y).square() * fit).sum())

    best = min(STEP_SIZES, key=fit_error)
    gd = gradient_descent(xs, ys, steps, best)
    errors = torch.stack([_held_out_errors(p, y, fit, task.error_scale) for p in gd], dim=1)
    return ProbeResult(layers, scale_shift, bootstrap_curve(errors.numpy(), list(range(steps + 1))), best)
