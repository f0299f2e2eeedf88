"""AdamW over the model's parameters and the learning-rate schedule: linear warm-up, then cosine decay.

The schedule is a pure function of the step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math

from torch import nn
from torch.optim import AdamW

from titans_cli.training.config import OptimConfig


def build_optimizer(model: nn.Module, optim: OptimConfig) -> AdamW:
    """Weight decay on matrices only: norms, biases and gate offsets keep their scale."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


def lr_at(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Learning rate for the update that completes step `step + 1` of `total_steps`."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))
    floor = optim.min_lr_ratio
    return optim.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: AdamW, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
