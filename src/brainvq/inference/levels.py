"""A slice's level from the level classifier: how slices are fed to it and its most likely level.

`brainvq anomaly` asks the run's classifier (RUN/evaluation/LevelClassifier) for the level of a 2D
slice whose name and flags give none (brainvq.app.anomaly.inputs). The slices go in as float in
[0, 1], box-downsampled to the classifier's size, CLASSIFIER_BATCH at a time in eval mode; the
evaluation's measures (brainvq.evaluation.generation_metrics: level accuracy, the Frechet
distance in its features) and its training (brainvq.evaluation.level_classifier) feed it the
same way.
"""

from __future__ import annotations

import numpy as np
import torch

from brainvq.models.eval_mode import eval_mode
from brainvq.models.level_classifier import LevelClassifier

CLASSIFIER_BATCH = 256  # slices through the classifier at once


def as_float(images: np.ndarray, name: str) -> np.ndarray:
    """images: (N, H, W) uint8 or float in [0, 1] -> (N, H, W) float32 in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"{name}: expected a non-empty (N, H, W) array, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float in [0, 1], got dtype {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: float images must lie in [0, 1], got range [{lo}, {hi}]")
    return images.astype(np.float32, copy=False)


def box_downsample(x: np.ndarray, size: int, name: str) -> np.ndarray:
    """x: (N, H, W) float -> (N, size, size), each output pixel the mean of its input block."""
    n, h, w = x.shape
    if h != w or h % size != 0:
        raise ValueError(
            f"{name}: expected square slices whose side is a multiple of {size}, got {h}x{w}"
        )
    f = h // size
    return x.reshape(n, size, f, size, f).mean(axis=(2, 4))  # (N, size, size)


def classifier_input(images: np.ndarray, size: int, name: str) -> torch.Tensor:
    """images: (N, H, W) uint8 | float [0, 1] -> (N, 1, size, size) float32 tensor in [0, 1]."""
    x = box_downsample(as_float(images, name), size, name)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)


@torch.no_grad()
def run_classifier(model: LevelClassifier, images: np.ndarray, logits: bool) -> torch.Tensor:
    """Batched eval-mode pass -> logits (N, n_levels) or features (N, F); keeps the model's mode."""
    x = classifier_input(images, model.config.image_size, "images")
    fn = model.forward if logits else model.features
    starts = range(0, len(x), CLASSIFIER_BATCH)
    with eval_mode(model):
        return torch.cat([fn(x[i : i + CLASSIFIER_BATCH]) for i in starts])


def predict_levels(model: LevelClassifier, images: np.ndarray) -> np.ndarray:
    """images: (N, H, W) uint8 | float [0, 1] -> (N,) int64 most likely level."""
    return run_classifier(model, images, logits=True).argmax(dim=1).numpy()
