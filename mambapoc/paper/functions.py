"""The function classes, their input distributions and the evaluation-time shifts.

Every draw comes from the `torch.Generator` passed in, so a batch of prompts is a function of the
generator's seed alone: training batches are reproducible by step and evaluation sets by seed.

During the curriculum only the first `active_dims` input coordinates are non-zero (the rest of the
read-in sees zeros), as in Garg et al.: the model always has the final input width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TASKS = ("linear", "sparse", "relu2nn", "tree")
INPUTS = ("gaussian", "skewed")


@dataclass(frozen=True)
class Task:
    name: str  # one of TASKS
    n_dims: int
    inputs: str = "gaussian"  # one of INPUTS
    sparsity: int = 3  # non-zero weights of a sparse linear function
    hidden_units: int = 100  # of the 2-layer ReLU network
    depth: int = 4  # of the decision tree

    @property
    def error_scale(self) -> float:
        """The variance of f(x) on training prompts. Squared errors are divided by it, so that
        predicting 0 scores about 1 in every class: d for linear and ReLU networks, s for sparse, 1 for trees."""
        return {"sparse": float(self.sparsity), "tree": 1.0}.get(self.name, float(self.n_dims))


@dataclass(frozen=True)
class Shift:
    """A change of the prompt distribution at evaluation time (the robustness checks of Garg et al.)."""

    x_scale: float = 1.0
    y_scale: float = 1.0
    noise_std: float = 0.0  # Gaussian noise added to the labels; errors are measured against noisy labels
    skewed: bool = False  # inputs with the skewed covariance whatever the training inputs were


SHIFTS = {
    "standard": Shift(),
    "skewed": Shift(skewed=True),
    "noisy": Shift(noise_std=1.0),
    "x*0.5": Shift(x_scale=0.5),
    "x*2": Shift(x_scale=2.0),
    "y*0.5": Shift(y_scale=0.5),
    "y*2": Shift(y_scale=2.0),
}


def sample_prompts(task: Task, n_points: int, batch: int, generator: torch.Generator,
                   active_dims: int | None = None, shift: Shift = SHIFTS["standard"]) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` prompts of `n_points` examples, each with its own function: xs (batch, n_points, n_dims)
    and ys (batch, n_points), float32 on the CPU."""
    active = active_dims or task.n_dims
    xs = torch.randn(batch, n_points, task.n_dims, generator=generator)
    xs[:, :, active:] = 0
    if task.inputs == "skewed" or shift.skewed:
        xs[:, :, :active] = xs[:, :, :active] @ _skewing(batch, active, generator)
    xs = xs * shift.x_scale
    ys = _FUNCTIONS[task.name](task, xs, active, generator) * shift.y_scale
    if shift.noise_std:
        ys = ys + shift.noise_std * torch.randn(ys.shape, generator=generator)
    return xs, ys


def _skewing(batch: int, dims: int, generator: torch.Generator) -> torch.Tensor:
    """Per prompt, a symmetric map with eigenvalues proportional to 1/i in a random orthonormal basis,
    so the inputs' covariance has eigenvalues proportional to 1/i^2; scaled so that E|x|^2 = dims, as
    for isotropic inputs."""
    eig = 1.0 / torch.arange(1, dims + 1, dtype=torch.float32)
    eig = eig * math.sqrt(dims / float(eig.square().sum()))
    basis, _ = torch.linalg.qr(torch.randn(batch, dims, dims, generator=generator))
    return basis @ torch.diag(eig) @ basis.transpose(1, 2)


def _linear(task: Task, xs: torch.Tensor, active: int, generator: torch.Generator) -> torch.Tensor:
    w = torch.randn(xs.shape[0], task.n_dims, 1, generator=generator)
    return (xs @ w)[..., 0]


def _sparse(task: Task, xs: torch.Tensor, active: int, generator: torch.Generator) -> torch.Tensor:
    # The non-zero coordinates are drawn among the active ones, or early in the curriculum most
    # functions would be identically zero.
    batch = xs.shape[0]
    w = torch.randn(batch, task.n_dims, generator=generator)
    order = torch.rand(batch, active, generator=generator).argsort(dim=1)
    keep = torch.zeros(batch, task.n_dims, dtype=torch.bool)
    keep.scatter_(1, order[:, : min(task.sparsity, active)], True)
    return (xs @ (w * keep)[..., None])[..., 0]


def _relu2nn(task: Task, xs: torch.Tensor, active: int, generator: torch.Generator) -> torch.Tensor:
    batch, hidden = xs.shape[0], task.hidden_units
    w1 = torch.randn(batch, task.n_dims, hidden, generator=generator)
    w2 = torch.randn(batch, hidden, 1, generator=generator)
    # sqrt(2 / hidden) gives f(x) the variance of a linear function's, d.
    return (torch.relu(xs @ w1) @ w2)[..., 0] * math.sqrt(2.0 / hidden)


def _tree(task: Task, xs: torch.Tensor, active: int, generator: torch.Generator) -> torch.Tensor:
    """A complete binary tree of `depth` levels: each internal node tests x_j > 0 for a random active
    coordinate j (heap order: the children of node k are 2k+1 and 2k+2), each leaf holds an N(0, 1) value."""
    batch, n_points = xs.shape[:2]
    internal = 2**task.depth - 1
    coords = torch.randint(0, active, (batch, internal), generator=generator)
    leaves = torch.randn(batch, internal + 1, generator=generator)
    node = torch.zeros(batch, n_points, dtype=torch.long)
    for _ in range(task.depth):
        coord = coords.gather(1, node)
        right = xs.gather(2, coord[..., None])[..., 0] > 0
        node = 2 * node + 1 + right.long()
    return leaves.gather(1, node - internal)


_FUNCTIONS = {"linear": _linear, "sparse": _sparse, "relu2nn": _relu2nn, "tree": _tree}
