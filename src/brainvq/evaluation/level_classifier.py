"""Training the level classifier whose features the generation metrics live in.

The classifier (`brainvq.models.level_classifier`) learns the axial level of a real training
slice; a run keeps it as a bundle in RUN/evaluation/LevelClassifier, so later commands (anomaly
maps, predict) can use the same one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from brainvq.evaluation.generation_metrics import check_levels, classifier_input
from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig
from brainvq.progress import Bar


def train_level_classifier(
    images: np.ndarray,
    levels: np.ndarray,
    config: LevelClassifierConfig,
    progress: bool = True,
) -> LevelClassifier:
    """Train the level classifier with cross-entropy; the same seed gives the same weights.

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
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = LevelClassifier(config)
    order = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = -(-len(x) // config.batch_size)
    model.train()
    with Bar("level classifier", config.epochs * steps_per_epoch, progress) as bar:
        for epoch in range(config.epochs):
            perm = torch.randperm(len(x), generator=order)
            for start in range(0, len(x), config.batch_size):
                idx = perm[start : start + config.batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.advance()
                bar.describe(
                    f"level classifier epoch {epoch + 1}/{config.epochs} loss {loss.item():.3f}"
                )
    return model.eval()
