"""The baselines of Garg et al., batched over prompts. Each learns from the first i pairs of its own
prompt and predicts y_i; at i = 0 there is nothing to learn from and every baseline predicts 0.

Least squares, nearest neighbours, averaging and Lasso are cheap and run at every position; the greedy
tree (one fit per prompt, in numpy) and the ReLU network (an optimisation per position) run at a grid
of positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from mambapoc.paper.functions import Task

# fit_predict(train_x (batch, i, d), train_y (batch, i), test_x (batch, d)) -> (batch,)
FitPredict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Baseline:
    name: str
    fit_predict: FitPredict
    every_position: bool = True

    def __call__(self, xs: torch.Tensor, ys: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """Predictions at `positions` of each prompt: (batch, len(positions))."""
        cols = [torch.zeros(xs.shape[0], dtype=torch.float64, device=xs.device) if i == 0
                else self.fit_predict(xs[:, :i], ys[:, :i], xs[:, i]).double() for i in positions]
        return torch.stack(cols, dim=1)


def least_squares(train_x, train_y, test_x):
    """The minimum-norm least-squares fit, so that it is defined with fewer points than dimensions."""
    w = torch.linalg.pinv(train_x.double()) @ train_y.double()[..., None]
    return (test_x.double()[:, None] @ w)[:, 0, 0]


def nearest_neighbours(train_x, train_y, test_x, k: int = 3):
    dist = (train_x - test_x[:, None]).square().sum(-1)
    nearest = dist.topk(min(k, dist.shape[1]), dim=1, largest=False).indices
    return train_y.gather(1, nearest).mean(1)


def averaging(train_x, train_y, test_x):
    """Predicts with w = mean of y_j x_j, the estimate of w = E[y x] for isotropic inputs."""
    w = (train_x * train_y[..., None]).mean(1)
    return (test_x * w).sum(-1)


def lasso(train_x, train_y, test_x, alpha: float = 0.01, iterations: int = 1000):
    """argmin_w |Xw - y|^2 / (2i) + alpha |w|_1 (scikit-learn's scaling, no intercept), by FISTA:
    accelerated proximal gradient with step 1/L, L the largest eigenvalue of X'X/i, all prompts at once."""
    x, y = train_x.double(), train_y.double()
    n = x.shape[1]
    gram = x.transpose(1, 2) @ x / n
    corr = (x.transpose(1, 2) @ y[..., None])[..., 0] / n
    step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1:].clamp_min(1e-12)
    w = z = torch.zeros_like(corr)
    t = 1.0
    for _ in range(iterations):
        grad = (gram @ z[..., None])[..., 0] - corr
        u = z - step * grad
        w_next = u.sign() * (u.abs() - step * alpha).clamp_min(0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return (test_x.double() * w).sum(-1)


def greedy_tree(train_x, train_y, test_x, max_depth: int = 4):
    """CART regression trees (squared error, thresholds halfway between sorted values), one per prompt."""
    xs, ys, tests = (t.detach().double().cpu().numpy() for t in (train_x, train_y, test_x))
    preds = [_tree_predict(_grow(x, y, max_depth), t) for x, y, t in zip(xs, ys, tests, strict=True)]
    return torch.tensor(preds, dtype=torch.float64, device=train_x.device)


def _grow(x: np.ndarray, y: np.ndarray, depth: int):
    """A leaf value, or (feature, threshold, left subtree, right subtree)."""
    if depth == 0 or len(y) < 2 or np.ptp(y) == 0:
        return float(y.mean())
    m = len(y)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    left = np.cumsum(y[order], axis=0)[:-1]  # row k: sum of the k+1 smallest, per feature
    count = np.arange(1, m)[:, None]
    # Minimising the children's squared error = maximising sum_L^2/n_L + sum_R^2/n_R.
    score = left**2 / count + (y.sum() - left) ** 2 / (m - count)
    score[xs[1:] == xs[:-1]] = -np.inf  # no threshold separates equal values
    k, j = np.unravel_index(np.argmax(score), score.shape)
    if not np.isfinite(score[k, j]):
        return float(y.mean())
    threshold = (xs[k, j] + xs[k + 1, j]) / 2
    goes_left = x[:, j] <= threshold
    return (j, threshold, _grow(x[goes_left], y[goes_left], depth - 1), _grow(x[~goes_left], y[~goes_left], depth - 1))


def _tree_predict(node, x: np.ndarray) -> float:
    while isinstance(node, tuple):
        j, threshold, left, right = node
        node = left if x[j] <= threshold else right
    return node


def relu_network(train_x, train_y, test_x, hidden: int = 100, steps: int = 100, lr: float = 5e-3, seed: int = 0):
    """Garg et al.'s: a 2-layer ReLU network per prompt (PyTorch's default initialisation), trained by
    full-batch Adam on the squared error; all prompts' networks train at once as batched matrices."""
    batch, _, d = train_x.shape
    g = torch.Generator(device=train_x.device).manual_seed(seed)

    def uniform(*shape, fan_in):
        return ((torch.rand(batch, *shape, generator=g, device=train_x.device) * 2 - 1) / math.sqrt(fan_in))

    params = [uniform(d, hidden, fan_in=d), uniform(1, hidden, fan_in=d),
              uniform(hidden, 1, fan_in=hidden), uniform(1, 1, fan_in=hidden)]
    for p in params:
        p.requires_grad_(True)

    def net(x):
        w1, b1, w2, b2 = params
        return (torch.relu(x @ w1 + b1) @ w2 + b2)[..., 0]

    optimizer = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            # Summed over prompts, so each prompt's network gets the gradient of its own mean error.
            loss = (net(train_x) - train_y).square().mean(1).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return net(test_x[:, None])[:, 0]


def baselines_for(task: Task) -> list[Baseline]:
    common = [Baseline("least squares", least_squares), Baseline("3-nearest neighbours", nearest_neighbours),
              Baseline("averaging", averaging)]
    extra = {
        "sparse": [Baseline("Lasso", lasso)],
        "relu2nn": [Baseline("2-layer ReLU network (Adam)", partial(relu_network, hidden=task.hidden_units), False)],
        "tree": [Baseline(f"greedy tree (depth {task.depth})", partial(greedy_tree, max_depth=task.depth), False)],
    }
    return common + extra.get(task.name, [])
