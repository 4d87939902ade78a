"""A slice's level from the level classifier: its input (float in [0, 1], box-downsampled) and
its prediction, batch by batch, equal to the model's own argmax; bad inputs refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainvq.inference.levels import CLASSIFIER_BATCH, classifier_input, predict_levels
from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig


def test_the_input_is_the_block_mean_in_zero_one() -> None:
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) * 5  # (2, 4, 4)
    x = classifier_input(images, 2, "images")  # (2, 1, 2, 2)
    assert x.shape == (2, 1, 2, 2) and x.dtype == torch.float32
    want = images.astype(np.float64).reshape(2, 2, 2, 2, 2).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(x[:, 0].numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(classifier_input(images / 255.0, 2, "images"), x, rtol=1e-6)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 6, 6), np.uint8), "images: expected square slices whose side is a multiple"),
        (np.zeros((2, 4, 6), np.uint8), "images: expected square slices"),
        (np.zeros((0, 4, 4), np.uint8), "images: expected a non-empty"),
        (np.zeros((2, 4, 4), np.int32), "images: expected uint8 or float"),
        (np.full((2, 4, 4), 1.5, np.float32), r"images: float images must lie in \[0, 1\]"),
    ],
)
def test_bad_images_are_refused_by_name(images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classifier_input(images, 4, "images")


def test_levels_are_the_models_argmax_over_batches_and_keep_its_mode() -> None:
    config = LevelClassifierConfig(image_size=8, n_levels=4, channels=(4, 8))
    torch.manual_seed(0)
    model = LevelClassifier(config).train()
    rng = np.random.default_rng(0)
    n = CLASSIFIER_BATCH + 3
    ramp = np.linspace(0, 1, 16)[None, None, :] * np.linspace(-255, 255, n)[:, None, None]
    noise = rng.normal(0, 20, (n, 16, 16))
    images = np.clip(128 + ramp + noise, 0, 255).astype(np.uint8)  # (n, 16, 16)
    with torch.no_grad():  # an untrained head answers its bias: centre it on these images
        model.eval()
        logits = model(classifier_input(images, 8, "images"))  # (n, 4)
        model.head.bias.sub_(logits.mean(dim=0))
        model.train()
    levels = predict_levels(model, images)
    assert model.training  # the mode it came with
    model.eval()
    with torch.no_grad():
        want = model(classifier_input(images, 8, "images")).argmax(dim=1).numpy()
    assert levels.dtype == np.int64 and levels.shape == (len(images),)
    np.testing.assert_array_equal(levels, want)
    assert len(np.unique(levels)) > 1  # a prediction, not a constant
