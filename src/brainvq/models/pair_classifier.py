"""SlicePairClassifier: a small CNN that tells whether two adjacent slices belong to one subject.

It sees slice k and slice k + 1 (and their difference) of a pair and answers with one logit:
one subject (adjacent slices of one brain) or two (slice k of one subject, slice k + 1 of
another, at the same levels). brainvq trains it on real training subjects
(brainvq.evaluation.consistency) and asks it about the adjacent slices of generated subjects:
the share it calls "one subject" measures how much a generated volume holds together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from brainvq.models.conv_classifier import check_conv_classifier, conv_pool_body


@dataclass
class PairClassifierConfig:
    """Architecture and training settings of the pair classifier.

    Attributes:
        image_size: side of the square input; slices are box-downsampled to it (the slice size
            must be a multiple of it).
        channels: output channels of the conv blocks, each halving the resolution.
        epochs: passes over the training pairs (one positive and one negative per adjacent
            pair of every training subject, negatives redrawn every epoch).
        batch_size: pairs per optimisation step.
        lr: Adam learning rate.
        seed: seeds the weights, the negatives and the order.
    """

    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64)
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def validate(self) -> None:
        check_conv_classifier(self)


class SlicePairClassifier(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) over (lower, upper, lower -
    upper), global average pool, a linear logit."""

    def __init__(self, config: PairClassifierConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.body = conv_pool_body(3, config.channels)
        self.head = nn.Linear(config.channels[-1], 1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """pairs: (B, 2, S, S) float in [0, 1], slice k then slice k + 1 -> (B,) logits of
        "one subject"."""
        size = self.config.image_size
        if pairs.ndim != 4 or pairs.shape[1:] != (2, size, size):
            raise ValueError(f"pairs: expected (B, 2, {size}, {size}), got {tuple(pairs.shape)}")
        x = torch.cat([pairs, pairs[:, :1] - pairs[:, 1:]], dim=1)  # (B, 3, S, S)
        return self.head(self.body(x).mean(dim=(2, 3)))[:, 0]  # (B,)
