"""Error against the number of in-context examples, for the models and the baselines, on the training
distribution and under shifts of it.

Position i of a prompt is the query with i examples before it. Its squared error is divided by the
task's error scale (so predicting 0 scores about 1), averaged over prompts, and given a bootstrap
5-95 % band over prompts. Within one shift every model and baseline sees the same prompts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from mambapoc.paper.baselines import Baseline
from mambapoc.paper.functions import SHIFTS, Task, sample_prompts
from mambapoc.paper.models import ICLModel

BOOTSTRAP_TRIALS = 1000
GRID_POSITIONS = 16  # where the costly baselines are evaluated


@dataclass
class Curve:
    x: list[int]  # positions (examples seen), or layers for probes
    mean: list[float]
    low: list[float]  # bootstrap 5 %
    high: list[float]  # bootstrap 95 %

    def at(self, x: int) -> float | None:
        return self.mean[self.x.index(x)] if x in self.x else None

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_curve(errors: np.ndarray, x: list[int], seed: int = 0) -> Curve:
    """Mean over rows (prompts) of errors (prompts, len(x)), with a 5-95 % bootstrap band."""
    rng = np.random.default_rng(seed)
    n = errors.shape[0]
    means = np.stack([errors[rng.integers(0, n, n)].mean(0) for _ in range(BOOTSTRAP_TRIALS)])
    low, high = np.quantile(means, [0.05, 0.95], axis=0)
    return Curve(list(x), errors.mean(0).tolist(), low.tolist(), high.tolist())


def grid_positions(n_points: int) -> list[int]:
    return sorted({round(float(p)) for p in np.linspace(0, n_points - 1, GRID_POSITIONS)})


@torch.no_grad()
def batched(predict, xs: torch.Tensor, ys: torch.Tensor, batch_size: int, device: torch.device,
            dim: int = 0) -> torch.Tensor:
    """predict(xs, ys) on `device`, `batch_size` prompts at a time, joined along `dim` on the CPU."""
    return torch.cat([predict(xs[i : i + batch_size].to(device), ys[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(xs), batch_size)], dim=dim)


def evaluate(models: dict[str, ICLModel], baselines: list[Baseline], task: Task, *, n_points: int, prompts: int,
             shifts: list[str], batch_size: int, seed: int, device: torch.device, console) -> dict[str, dict[str, Curve]]:
    """{shift: {model or baseline name: Curve over positions}}."""
    results: dict[str, dict[str, Curve]] = {}
    for k, shift in enumerate(shifts):
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 1000 + k)
        xs, ys = sample_prompts(task, n_points, prompts, generator, shift=SHIFTS[shift])
        y = ys.double()
        curves = {}
        every = list(range(n_points))
        for name, model in models.items():
            err = (batched(model, xs, ys, batch_size, device).double() - y).square() / task.error_scale
            curves[name] = bootstrap_curve(err.numpy(), every)
        for baseline in baselines:
            positions = every if baseline.every_position else grid_positions(n_points)
            pred = batched(partial(baseline, positions=positions), xs, ys, batch_size, device)
            err = (pred - y[:, positions]).square() / task.error_scale
            curves[baseline.name] = bootstrap_curve(err.numpy(), positions)
        results[shift] = curves
        console.print(f"  evaluated {shift}: {prompts} prompts x {n_points} points in {time.perf_counter() - t0:.1f} s")
    return results
