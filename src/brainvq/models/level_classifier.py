"""LevelClassifier: a small CNN that predicts the axial level of a brain slice.

brainvq trains it on the real training slices (brainvq.evaluation.level_classifier); its
global-average-pooled penultimate features are the feature space of the Frechet distance
between generated and real slices (brainvq.evaluation.generation_metrics): anatomy-aware
features that need no download.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from brainvq.config import require


@dataclass
class LevelClassifierConfig:
    """Architecture and training settings of the level classifier.

    Attributes:
        image_size: side of the square input; slices are box-downsampled to it, so the slice size
            must be a multiple of it.
        n_levels: number of axial levels (classes), levels are in [0, n_levels).
        channels: output channels of the conv blocks; each block halves the resolution, and the
            last entry is the feature dimension F.
        epochs: passes over the training slices.
        batch_size: slices per optimisation step.
        lr: Adam learning rate.
        seed: seeds the weight initialisation and the shuffling order.
    """

    image_size: int = 64
    n_levels: int = 32
    channels: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def validate(self) -> None:
        require(self.image_size >= 4, "image_size", f"expected >= 4, got {self.image_size}")
        require(self.n_levels >= 2, "n_levels", f"expected >= 2, got {self.n_levels}")
        require(len(self.channels) >= 1, "channels", "expected at least one conv block")
        require(
            all(c >= 1 for c in self.channels),
            "channels",
            f"expected positive channel counts, got {list(self.channels)}",
        )
        require(
            self.image_size % (2 ** len(self.channels)) == 0,
            "image_size",
            f"expected a multiple of 2**len(channels) = {2 ** len(self.channels)} "
            f"(each block halves the resolution), got {self.image_size}",
        )
        require(self.epochs >= 1, "epochs", f"expected >= 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"expected >= 1, got {self.batch_size}")
        require(self.lr > 0, "lr", f"expected > 0, got {self.lr}")
        require(self.seed >= 0, "seed", f"expected >= 0, got {self.seed}")


def conv_pool_body(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """A small image classifier's body: per width, a 3x3 conv, batch norm, ReLU and a 2x2
    max-pool (the level and the pair classifiers share it)."""
    blocks: list[nn.Module] = []
    for out_channels in channels:
        blocks += [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        in_channels = out_channels
    return nn.Sequential(*blocks)


class LevelClassifier(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool), global average pool, linear head.

    Full-resolution first convolutions (rather than strided ones) keep the features sensitive to
    blur and to fine anatomy: on OASIS they separate blurred slices from real ones about twice as
    far, for about twice the training time.
    """

    def __init__(self, config: LevelClassifierConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.body = conv_pool_body(1, config.channels)
        self.head = nn.Linear(config.channels[-1], config.n_levels)

    def _check_input(self, x: torch.Tensor) -> None:
        size = self.config.image_size
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(
                f"LevelClassifier expects (B, 1, {size}, {size}) input, got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, S, S) float in [0, 1], S = image_size -> (B, F) pooled features."""
        self._check_input(x)
        h = self.body(x)  # (B, F, S / 2**L, S / 2**L)
        return h.mean(dim=(2, 3))  # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, S, S) float in [0, 1] -> logits (B, n_levels)."""
        return self.head(self.features(x))
