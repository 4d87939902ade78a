"""Intensity standardisation: a scan's brain mapped onto the training data's landmarks, and back."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.data.space.intensity import (
    PERCENTILES,
    Landmarks,
    landmarks_of,
    learn_landmarks,
    peak_landmarks,
    standardise,
    unstandardise,
)


def training_landmarks() -> Landmarks:
    rng = np.random.default_rng(0)
    images = np.clip(rng.normal(120, 30, (6, 16, 16)), 0, 255).astype(np.uint8)
    regions = np.ones(images.shape, bool)
    return learn_landmarks(images, regions, np.repeat(["a", "b", "c"], 2))


def test_a_scan_of_another_contrast_and_scale_gets_the_training_percentiles() -> None:
    target = training_landmarks()
    rng = np.random.default_rng(1)
    tissue = rng.gamma(4.0, 1.0, 20_000)
    scan = 700 * tissue**1.4 + 50  # another scanner: its own curve and units
    out = standardise(scan, landmarks_of(scan), target)
    np.testing.assert_allclose(np.percentile(out, PERCENTILES), target.values, atol=2e-3)
    assert out.min() >= 0 and out.max() <= 1


def test_the_map_is_inverted_exactly_within_range() -> None:
    target = training_landmarks()
    scan = np.random.default_rng(2).uniform(10, 900, 5000)
    own = landmarks_of(scan)
    back = unstandardise(standardise(scan, own, target), own, target)
    inside = (scan > own[0]) & (scan < own[-1])
    np.testing.assert_allclose(back[inside], scan[inside], rtol=1e-4)


def test_white_matter_peak_scaling_is_one_line_through_zero() -> None:
    target = training_landmarks()
    rng = np.random.default_rng(3)
    scan = np.concatenate([rng.normal(300, 20, 8000), rng.normal(600, 15, 12000)])
    out = standardise(scan, peak_landmarks(scan, target), target)
    ratio = out[scan > 100] / scan[scan > 100]
    assert ratio.std() / ratio.mean() < 1e-3
    assert np.median(out[scan > 500]) == pytest.approx(target.peak, abs=0.02)


def test_landmarks_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Landmarks(tuple([0.5] * len(PERCENTILES)), 0.5)
