"""LevelClassifier: a small CNN that predicts the axial level of a brain slice.

brainvq trains it on the real training slices (brainvq.evaluation.level_classifier); its
global-average-pooled penultimate features are the feature space of the Frechet distance
between generated and real slices (brainvq.evaluation.generation_metrics): anatomy-aware
features that need no download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from brainvq.config import require
from brainvq.models.conv_classifier import check_conv_classifier, conv_pool_body


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
        require(self.n_levels >= 2, "n_levels", f"expected >= 2, got {self.n_levels}")
        check_conv_classifier(self)


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
