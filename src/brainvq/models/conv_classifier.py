"""The small image classifiers brainvq trains for its measures (the level classifier, the slice
pair classifier): the conv body they share and the one check of the settings they share.

Both are a few conv blocks that each halve the resolution, trained with Adam from a seed
(brainvq.evaluation.classifier_training); each config adds its own head's settings and checks
those, then calls `check_conv_classifier` for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from torch import nn

from brainvq.config import require
from brainvq.values import SEED


class ConvClassifierSettings(Protocol):
    """What a conv classifier's config holds besides its head: input side, conv widths, and
    the training's epochs, batch size, Adam learning rate and seed."""

    image_size: int
    channels: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    seed: int


def check_conv_classifier(config: ConvClassifierSettings) -> None:
    """ConfigError naming the first setting out of range (brainvq.config.require)."""
    require(config.image_size >= 4, "image_size", f"expected >= 4, got {config.image_size}")
    require(len(config.channels) >= 1, "channels", "expected at least one conv block")
    require(
        all(c >= 1 for c in config.channels),
        "channels",
        f"expected positive channel counts, got {list(config.channels)}",
    )
    require(
        config.image_size % (2 ** len(config.channels)) == 0,
        "image_size",
        f"expected a multiple of 2**len(channels) = {2 ** len(config.channels)} "
        f"(each block halves the resolution), got {config.image_size}",
    )
    require(config.epochs >= 1, "epochs", f"expected >= 1, got {config.epochs}")
    require(config.batch_size >= 1, "batch_size", f"expected >= 1, got {config.batch_size}")
    require(config.lr > 0, "lr", f"expected > 0, got {config.lr}")
    require(SEED.accepts(config.seed), "seed", f"expected {SEED.expected}, got {config.seed!r}")


def conv_pool_body(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """A small image classifier's body: per width, a 3x3 conv, batch norm, ReLU and a 2x2
    max-pool."""
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
