"""The shift check (brainvq.evaluation.calibration_shift): it warns on a scan whose healthy
tissue flags more than the calibration allows (a contrast or noise the maps mistake for lesions
everywhere), not on healthy scans from the calibration's own distribution (at most 10% of them,
slices of one scan depending on each other) nor on a lesion in a minority of the slices; a scan
that is only "too likely" gets a note; the contrast and noise it reports measure what they say."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.evaluation.calibration_shift import (
    EXCESS_RATE,
    WARN_SHARE,
    SliceStatistics,
    describe,
    histogram_distance,
    noise_levels,
    shift_check,
)

SLICES = 32


def healthy_shares(rng: np.random.Generator, n: int, subject: float = 0.0) -> np.ndarray:
    """Flagged shares of n healthy slices: most slices flag nothing, some a blob; a subject
    effect scales a whole scan's flagging (its slices depend on each other)."""
    blob = rng.random(n) < 0.35 * np.exp(subject)
    return np.where(blob, rng.exponential(0.02 * np.exp(subject), n), 0.0)


def stats(rng: np.random.Generator, n: int, nll: float = 3.0) -> SliceStatistics:
    return SliceStatistics(np.arange(n) % SLICES, nll + 0.2 * rng.standard_normal(n))


def test_healthy_scans_of_the_calibrations_kind_are_rarely_warned() -> None:
    rng = np.random.default_rng(0)
    warned = []
    for _ in range(300):
        cal_subjects = np.repeat(0.3 * rng.standard_normal(16), SLICES)
        calibration = healthy_shares(rng, 16 * SLICES, cal_subjects)
        scan = healthy_shares(rng, SLICES, 0.3 * rng.standard_normal())
        check = shift_check(stats(rng, 512), calibration, stats(rng, SLICES), scan)
        warned.append(check["warn"])
    assert np.mean(warned) <= EXCESS_RATE / WARN_SHARE, np.mean(warned)


def test_a_scan_that_flags_too_much_is_warned_and_a_minority_of_lesions_is_not() -> None:
    rng = np.random.default_rng(1)
    calibration = healthy_shares(rng, 512)
    everywhere = 0.08 + rng.exponential(0.05, SLICES)  # every slice flags like a lesion
    check = shift_check(stats(rng, 512), calibration, stats(rng, SLICES), everywhere)
    assert check["warn"] and "does NOT apply" in describe(check)
    assert check["flagging"]["slices_over_limit"] > WARN_SHARE * SLICES
    lesion = healthy_shares(rng, SLICES)
    lesion[10:20] = 0.2  # a lesion through 10 of 32 slices
    check = shift_check(stats(rng, 512), calibration, stats(rng, SLICES), lesion)
    assert not check["warn"] and "the calibration applies" in describe(check)


def test_a_scan_that_is_only_too_likely_gets_a_note_not_the_warning() -> None:
    rng = np.random.default_rng(2)
    calibration = healthy_shares(rng, 512)
    check = shift_check(
        stats(rng, 512), calibration, stats(rng, SLICES, nll=1.0), healthy_shares(rng, SLICES)
    )
    assert not check["warn"] and check["likelihood"]["p"] < 0.01
    assert len(check["notes"]) == 1 and "more likely" in check["notes"][0]


def test_too_few_calibration_slices_do_not_warn_and_say_why() -> None:
    rng = np.random.default_rng(3)
    check = shift_check(stats(rng, 10), healthy_shares(rng, 10), stats(rng, 8), np.ones(8))
    assert not check["warn"] and "too few calibration slices" in check["notes"][0]


def test_noise_and_contrast_measure_what_they_say() -> None:
    rng = np.random.default_rng(4)
    side = 96
    yy, xx = np.mgrid[0:side, 0:side]
    brain = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= 40**2
    smooth = 0.4 + 0.2 * np.sin(yy / 15.0) * np.cos(xx / 20.0)  # slow anatomy: no noise
    for sigma in (0.01, 0.03):
        noisy = np.clip(smooth + sigma * rng.standard_normal((side, side)), 0, 1)
        image = np.round(noisy * brain * 255).astype(np.uint8)[None]
        assert noise_levels(image, brain[None])[0] == pytest.approx(sigma, rel=0.2)
    a = np.zeros(32)
    a[10] = 100
    b = np.zeros(32)
    b[14] = 50  # the same mass 4 bins (0.125 of the range) higher
    assert histogram_distance(a, a) == 0.0
    assert histogram_distance(a, b) == pytest.approx(4 / 32)
