"""Training the level classifier whose features the generation metrics live in.

The classifier (`brainvq.models.level_classifier`) learns the axial level of a real training
slice; a run keeps it as a bundle in RUN/evaluation/LevelClassifier, so later commands (anomaly
maps, predict) can use the same one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from brainvq.evaluation.classifier_training import train_classifier
from brainvq.evaluation.generation_metrics import check_levels
from brainvq.inference.levels import classifier_input
from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig


def train_level_classifier(
    images: np.ndarray,
    levels: np.ndarray,
    config: LevelClassifierConfig,
    progress: bool = True,
) -> LevelClassifier:
    """Train the level classifier with cross-entropy (brainvq.evaluation.classifier_training);
    the same seed gives the same weights.

    Args:
        images: (N, H, W) uint8 (or float in [0, 1]) real training slices, H a multiple of
            config.image_size; they are box-downsampled to image_size.
        levels: (N,) int axial level of each slice in [0, config.n_levels).
        config: architecture and training settings.
        progress: show a progress bar with the running loss.
    Returns:
        the trained classifier, in eval mode.
    """
    config.validate()
    x = classifier_input(images, config.image_size, "images")
    y = torch.from_numpy(check_levels(levels, len(x), config.n_levels, "levels"))
    return train_classifier(
        LevelClassifier,
        config,
        lambda: (x, y),
        len(x),
        F.cross_entropy,
        "level classifier",
        progress,
    )
