"""The one training loop of brainvq's measuring classifiers (the level classifier, the slice
pair classifier: brainvq.models.conv_classifier): Adam on minibatches in a seeded order.

The weights are initialised under the config's seed inside a forked torch RNG, and the order of
the examples comes from a generator of its own, so the same seed gives the same weights and
training leaves the caller's random state alone. The examples may be redrawn every epoch (the
pair classifier's negatives are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from brainvq.models.conv_classifier import ConvClassifierSettings
from brainvq.progress import Bar

M = TypeVar("M", bound=nn.Module)
C = TypeVar("C", bound=ConvClassifierSettings)


def train_classifier(
    build: Callable[[C], M],
    config: C,
    epoch_examples: Callable[[], tuple[Tensor, Tensor]],
    n_examples: int,
    loss: Callable[[Tensor, Tensor], Tensor],
    name: str,
    progress: bool = True,
) -> M:
    """Build `build(config)` from config.seed and train it for config.epochs.

    Args:
        build: the classifier's class (or any function of its config).
        config: its settings (epochs, batch_size, lr, seed are read here).
        epoch_examples: () -> (inputs (N, ...) float, targets (N, ...)), called at the start of
            every epoch; N must be n_examples.
        n_examples: examples per epoch (for the progress bar's length).
        loss: (model output, targets) -> scalar loss.
        name: what the progress bar says it trains ("level classifier").
        progress: show a progress bar with the running loss.
    Returns:
        the trained classifier, in eval mode.
    """
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = build(config)
    order = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = -(-n_examples // config.batch_size)
    model.train()
    with Bar(name, config.epochs * steps_per_epoch, progress) as bar:
        for epoch in range(config.epochs):
            x, y = epoch_examples()
            perm = torch.randperm(len(x), generator=order)
            for start in range(0, len(x), config.batch_size):
                idx = perm[start : start + config.batch_size]
                value = loss(model(x[idx]), y[idx])
                optimiser.zero_grad(set_to_none=True)
                value.backward()
                optimiser.step()
                bar.advance()
                bar.describe(f"{name} epoch {epoch + 1}/{config.epochs} loss {value.item():.3f}")
    return model.eval()
