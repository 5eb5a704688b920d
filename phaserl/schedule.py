"""The learning-rate schedule of a stage: linear warmup over `warmup_ratio` of its steps, then constant, cosine or
linear decay to zero (OptimConfig.schedule). One LambdaLR, so its state saves and resumes with the optimizer's."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, steps: int, warmup_ratio: float, schedule: str) -> float:
    """The multiplier of the base learning rate at scheduler step `step` (0-based) of `steps`."""
    warmup = int(warmup_ratio * steps)
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "linear":
        return max(0.0, 1 - progress)
    return 1.0


def make_scheduler(optimizer, optim, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """`optim`'s schedule (warmup_ratio, schedule) over `steps` optimizer-step rounds of a stage."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps, optim.warmup_ratio, optim.schedule)
    )
