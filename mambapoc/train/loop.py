"""The training loop: AdamW with warmup and cosine decay, weighted token loss, atomic checkpoints.

A checkpoint holds the weights, the optimiser, the step and the loss history. It is written to a
temporary file and renamed, so an interruption leaves the previous checkpoint intact; a rerun picks up
at the saved step and, because batches depend only on (seed, step), continues exactly as if never
stopped. Batches can be made by worker processes (`workers`), in step order, so the data pipeline
keeps a GPU busy without changing what is trained on.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mambapoc.fsutil import atomic_path
from mambapoc.train.data import IGNORE, SequenceMaker


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss of each step
    tokens: int = 0
    wall_s: float = 0.0
    hardware: str = ""  # where the steps ran; "A + B" when a run was resumed elsewhere


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    )
    w = weights.reshape(-1) * (labels.reshape(-1) != IGNORE)
    return (per_token * w).sum() / w.sum().clamp_min(1.0)


def save_checkpoint(path: Path, model, optimizer, state: TrainState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state.__dict__}, tmp)


def load_checkpoint(path: Path, model, optimizer) -> TrainState:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return TrainState(**ckpt["state"])


class _Batches(torch.utils.data.Dataset):
    """Batch number `step` of the maker, for a DataLoader whose sampler yields step numbers."""

    def __init__(self, maker: SequenceMaker, batch_size: int):
        self.maker, self.batch_size = maker, batch_size

    def __getitem__(self, step: int):
        return self.maker.batch(step, self.batch_size)


def _batches(maker: SequenceMaker, batch_size: int, start: int, stop: int, workers: int, device: str):
    if workers == 0:
        return (maker.batch(step, batch_size) for step in range(start, stop))
    # Worker processes must not inherit a tokenizer that already spawned its own threads.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return torch.utils.data.DataLoader(
        _Batches(maker, batch_size), batch_size=None, sampler=range(start, stop), num_workers=workers,
        prefetch_factor=8, pin_memory=device.startswith("cuda"),
    )


def train_model(model, maker: SequenceMaker, *, name: str, steps: int, batch_size: int, lr: float,
                warmup_steps: int, weight_decay: float, grad_clip: float, checkpoint: Path,
                checkpoint_every: int, device: str = "cpu", workers: int = 0, hardware: str = "",
                console=None) -> TrainState:
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95),
    )
    state = load_checkpoint(checkpoint, model, optimizer) if checkpoint.is_file() else TrainState()
    if state.step < steps and hardware and hardware not in state.hardware.split(" + "):
        state.hardware = f"{state.hardware} + {hardware}" if state.hardware else hardware
    model.train()
    progress = Progress(
        TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn(), console=console,
    )
    with progress:
        bar = progress.add_task("", total=steps, completed=state.step, loss="-", tps="-")
        t0 = time.perf_counter()
        for ids, labels, weights in _batches(maker, batch_size, state.step, steps, workers, device):
            ids, labels, weights = (t.to(device, non_blocking=True) for t in (ids, labels, weights))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, steps, warmup_steps, lr)
            loss = weighted_loss(model(ids).logits, labels, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            loss_value = loss.item()
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            state.step += 1
            state.losses.append(loss_value)
            state.tokens += ids.numel()
            state.wall_s += dt
            recent = state.losses[-20:]
            progress.update(bar, advance=1, loss=f"{sum(recent) / len(recent):.3f}", tps=f"{ids.numel() / dt:,.0f}")
            if state.step % checkpoint_every == 0 or state.step == steps:
                save_checkpoint(checkpoint, model, optimizer, state)
    model.eval()
    return state
