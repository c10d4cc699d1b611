"""Training an in-context learner: squared error of the read-out at every x position, on fresh prompts
each step, with the curriculum of Garg et al. over the input dimension and the number of points.

The batch of step s depends only on (seed, s), so every model of a recipe sees the same prompts and an
interrupted run resumes from its checkpoint exactly as if never stopped (the checkpoint helpers and the
learning-rate schedule are the LM trainer's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mambapoc.paper.functions import Task, sample_prompts
from mambapoc.paper.models import ICLModel
from mambapoc.train.loop import TrainState, load_checkpoint, lr_at, save_checkpoint


@dataclass(frozen=True)
class Curriculum:
    """Active input dimensions and points per prompt, each growing by its increment every `interval`
    steps from its start to its end."""

    dims: tuple[int, int, int]  # start, end, increment
    points: tuple[int, int, int]
    interval: int

    def at(self, step: int) -> tuple[int, int]:
        k = step // self.interval
        return tuple(min(start + k * inc, end) for start, end, inc in (self.dims, self.points))

    @property
    def ends_at(self) -> int:
        """The first step with the final dimension and number of points."""
        rounds = max(-(-(end - start) // inc) for start, end, inc in (self.dims, self.points))
        return rounds * self.interval


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    checkpoint_every: int


def batch_at(task: Task, curriculum: Curriculum, seed: int, step: int, batch_size: int):
    dims, points = curriculum.at(step)
    generator = torch.Generator().manual_seed((seed << 32) + step)
    return sample_prompts(task, points, batch_size, generator, active_dims=dims)


def train_model(model: ICLModel, task: Task, curriculum: Curriculum, schedule: Schedule, *, seed: int,
                checkpoint: Path, name: str, device: torch.device, console=None) -> TrainState:
    """Train `model` in place to `schedule.steps`, resuming from `checkpoint` if it exists."""
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    state = load_checkpoint(checkpoint, model, optimizer) if checkpoint.is_file() else TrainState()
    model.train()
    progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=console)
    with progress:
        bar = progress.add_task("", total=schedule.steps, completed=state.step, loss="-")
        while state.step < schedule.steps:
            t0 = time.perf_counter()
            xs, ys = (t.to(device) for t in batch_at(task, curriculum, seed, state.step, schedule.batch_size))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, schedule.steps, schedule.warmup_steps, schedule.lr)
            loss = (model(xs, ys) - ys).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
            optimizer.step()
            state.step += 1
            state.losses.append(loss.item())
            state.tokens += 2 * ys.numel()
            state.wall_s += time.perf_counter() - t0
            recent = state.losses[-50:]
            progress.update(bar, advance=1, loss=f"{sum(recent) / len(recent):.3f}")
            if state.step % schedule.checkpoint_every == 0 or state.step == schedule.steps:
                save_checkpoint(checkpoint, model, optimizer, state)
    model.eval()
    return state
