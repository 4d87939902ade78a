"""`eval_mode`: run a block with models in eval mode, then give every submodule back the mode
it had. The one way brainvq borrows a model that may be training (a sampler called from a
callback, the anomaly maps of a model a notebook is fine-tuning): restoring each submodule, not
the whole model at once, keeps a part that was deliberately left in eval mode (a frozen
quantizer) as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put `models` in eval mode for the block; afterwards (also after an exception) every
    submodule is in the mode it was in before."""
    modes = [(m, m.training) for model in models for m in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
