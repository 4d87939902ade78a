"""Learning-rate schedule shared by both stages: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from brainvq.run_config import TrainConfig


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    total_steps: int,
    budget_used: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR: lr ramps linearly over `cfg.warmup_steps`, then follows a cosine down to
    `cfg.min_lr_ratio` x lr at `total_steps` (and stays there if training runs longer).

    budget_used: the share of a time budget spent so far (0..1), or None. The cosine then
    follows whichever is further along, the steps or the clock, so a stage that --max-minutes
    stops before its last epoch still ends at the low learning rate instead of being cut off
    at a high one.
    """
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if budget_used is not None:
            progress = max(progress, min(1.0, budget_used()))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
