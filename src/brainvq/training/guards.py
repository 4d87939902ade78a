"""Stop training loudly when a loss stops being a finite number."""

from __future__ import annotations

import torch


class NonFiniteLossError(ArithmeticError):
    """A training loss became NaN or infinite; the message names the step and the losses."""


def check_finite(step: int, losses: dict[str, torch.Tensor]) -> None:
    """Raise NonFiniteLossError if any loss in `losses` is NaN or infinite."""
    values = {k: float(v.detach()) for k, v in losses.items()}
    if not all(torch.isfinite(torch.tensor(list(values.values())))):
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {shown}. Training stopped; the last good "
            "checkpoint is kept. Try a lower --lr, --precision 32, or check the input data."
        )
