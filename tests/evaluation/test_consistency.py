"""The consistency measures tell one brain from a stack of many: on toy subjects (smooth random
volumes) real adjacent slices score a higher SSIM than slices of independent subjects stacked
level by level, the SSIM distance between two real groups is below the distance to such stacks,
and a pair classifier trained on real subjects calls held-out real pairs one subject and
stacked ones two."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from brainvq.evaluation.consistency import (
    adjacent_ssim,
    pair_check,
    same_subject_share,
    ssim_distance,
    train_pair_classifier,
)
from brainvq.models.pair_classifier import PairClassifierConfig, SlicePairClassifier


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_subjects(n: int, seed: int, slices: int = 6, side: int = 16) -> np.ndarray:
    """(n, slices, side, side) uint8: smooth random 3D fields, so adjacent slices of one subject
    share most of their structure."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(n, slices, side, side)), (0, 1.5, 1.5, 1.5))
    field = (field - field.mean()) / field.std()
    return np.clip(128 + 60 * field, 0, 255).astype(np.uint8)


def stacked(volumes: np.ndarray) -> np.ndarray:
    """The floor: level k of stack s from subject s + k, so no two adjacent slices of a stack
    come from one subject."""
    s, n = volumes.shape[:2]
    return np.stack([volumes[(np.arange(s) + k) % s, k] for k in range(n)], axis=1)


def test_adjacent_ssim_and_its_distance_separate_one_brain_from_a_stack() -> None:
    real_a, real_b = toy_subjects(12, 0), toy_subjects(12, 1)
    floor = stacked(real_b)
    assert adjacent_ssim(real_a).shape == (12, 5)
    assert adjacent_ssim(real_a).mean() > adjacent_ssim(floor).mean() + 0.2
    ceiling = ssim_distance(adjacent_ssim(real_a), adjacent_ssim(real_b))
    assert ceiling < 0.5 * ssim_distance(adjacent_ssim(real_a), adjacent_ssim(floor))


def test_the_pair_classifier_calls_real_pairs_one_subject_and_stacks_two() -> None:
    config = PairClassifierConfig(image_size=16, channels=(8, 16), epochs=6, batch_size=32)
    model = train_pair_classifier(toy_subjects(40, 3), config, progress=False)
    held_out = toy_subjects(12, 4)
    check = pair_check(model, held_out)
    assert check["accuracy"] > 0.85, check
    assert same_subject_share(model, held_out) > 0.8
    assert same_subject_share(model, stacked(held_out)) < 0.2


@pytest.mark.parametrize(
    "volumes",
    [np.zeros((2, 1, 16, 16), np.uint8), np.zeros((2, 3, 16, 16)), np.zeros((3, 16, 16), np.uint8)],
)
def test_volumes_that_are_no_subjects_are_refused(volumes: np.ndarray) -> None:
    with pytest.raises(ValueError, match="volumes: expected subjects \\(S, L, H, W\\) uint8"):
        adjacent_ssim(volumes)


def test_pairs_must_be_square_at_the_classifier_size() -> None:
    model = SlicePairClassifier(PairClassifierConfig(image_size=16, channels=(8,)))
    with pytest.raises(ValueError, match="pairs: expected \\(B, 2, 16, 16\\)"):
        model(torch.zeros(1, 1, 16, 16))
