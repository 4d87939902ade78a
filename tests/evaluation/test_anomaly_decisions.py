"""The slice and scan decisions (brainvq.evaluation.anomaly_decisions): a lesion that the map
marks flags its slice where the earlier score (the mean of the map's brightest pixels) did not,
healthy slices are flagged at the stated rate, and Simes' combination of a scan's slice p-values
is right on constructed p-values and holds its rate on healthy scans."""

from __future__ import annotations

import numpy as np
import pytest

from brainvq.evaluation.anomaly_calibration import (
    CalibrationMaps,
    calibrate_thresholds,
    calibration_scores,
)
from brainvq.evaluation.anomaly_decisions import (
    LEGACY_SCORE,
    SLICE_SCORE,
    bonferroni,
    largest_flagged_area,
    simes,
    slice_scores,
    slices_needed,
)
from brainvq.evaluation.conformal import conformal_p_values
from brainvq.run_config import AnomalyConfig

SIDE = 48
ALPHA = 0.02


def healthy_maps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n healthy 'maps' (n, SIDE, SIDE) inside a disc of brain: a low floor, and a few bright
    specks of 1-4 pixels each, as healing leaves on healthy tissue."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    brain = (yy - SIDE / 2) ** 2 + (xx - SIDE / 2) ** 2 <= (SIDE / 2 - 3) ** 2
    maps = rng.exponential(0.01, (n, SIDE, SIDE)).astype(np.float32)
    inside = np.argwhere(brain)
    for amap in maps:
        for _ in range(int(rng.integers(0, 4))):
            r, c = inside[rng.integers(len(inside))]
            amap[r : r + rng.integers(1, 3), c : c + rng.integers(1, 3)] = rng.uniform(0.3, 0.6)
    foreground = np.broadcast_to(brain, maps.shape).copy()
    return maps * foreground, foreground


def test_a_lesion_the_map_marks_flags_its_slice_where_the_earlier_score_did_not() -> None:
    """A faint lesion of 120 pixels (5% of the brain), marked above the pixel threshold but
    below the healthy specks' brightness: the slice score that follows the map flags it, the
    mean of the map's top 0.5% of pixels (the earlier score) does not."""
    rng = np.random.default_rng(0)
    maps, foreground = healthy_maps(rng, 400)
    settings = AnomalyConfig()
    stats = CalibrationMaps.of(maps, foreground)
    cal = calibrate_thresholds(stats, ALPHA, 5.0, 10, settings)
    assert cal.slice_score == SLICE_SCORE
    lesion_map, lesion_fg = healthy_maps(rng, 1)
    lesion_map[0, 14:24, 20:32] = 2.0 * cal.pixel_threshold  # marked, and faint
    scores = slice_scores(cal.slice_score, lesion_map, lesion_fg, cal.pixel_threshold, settings)
    p = conformal_p_values(calibration_scores(stats, cal.pixel_threshold, settings), scores)
    assert scores[0] > cal.slice_threshold and p[0] <= ALPHA
    legacy = CalibrationMaps(
        stats.values,
        stats.counts,
        None,
        slice_scores(LEGACY_SCORE, maps, foreground, 0.0, settings),
    )
    old = calibrate_thresholds(legacy, ALPHA, 5.0, 10, settings)
    old_score = slice_scores(LEGACY_SCORE, lesion_map, lesion_fg, 0.0, settings)
    assert old.slice_score == LEGACY_SCORE and old_score[0] <= old.slice_threshold
    # healthy slices of the same kind are flagged at the stated rate
    test_maps, test_fg = healthy_maps(rng, 2000)
    healthy = slice_scores(cal.slice_score, test_maps, test_fg, cal.pixel_threshold, settings)
    rate = float((healthy > cal.slice_threshold).mean())
    assert rate <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 2000), rate


def test_largest_flagged_area_is_the_largest_region_as_a_share_of_the_brain() -> None:
    maps = np.zeros((3, 10, 10), dtype=np.float32)
    foreground = np.ones((3, 10, 10), dtype=bool)
    foreground[2] = False
    maps[0, 1:3, 1:3] = 1.0  # 4 pixels
    maps[0, 6:9, 6:9] = 1.0  # 9 pixels
    maps[0, 3, 3] = 1.0  # touches the first square diagonally: 8-connected, 5 pixels
    maps[1, 5, 5] = 0.5  # at the threshold: not above it
    maps[2] = 1.0  # no brain
    np.testing.assert_allclose(largest_flagged_area(maps, foreground, 0.5), [0.09, 0.0, 0.0])


def test_conformal_p_values_count_the_calibration_scores_at_least_as_high() -> None:
    calibration = np.array([0.0, 0.0, 1.0, 2.0, 3.0])
    p = conformal_p_values(calibration, np.array([0.0, 0.5, 3.0, 9.0]))
    np.testing.assert_allclose(p, [6 / 6, 4 / 6, 2 / 6, 1 / 6])


def test_simes_and_bonferroni_on_constructed_p_values() -> None:
    assert simes(np.array([0.01, 0.04, 0.5])) == pytest.approx(0.03)
    assert simes(np.array([0.02, 0.02, 0.02])) == pytest.approx(0.02)  # several slices help
    assert bonferroni(np.array([0.02, 0.02, 0.02])) == pytest.approx(0.06)
    assert simes(np.array([0.5, 0.2, 0.9, 0.3])) == pytest.approx(0.6)  # 4 * 0.3 / 2
    assert simes(np.array([])) == 1.0 and bonferroni(np.array([0.9, 0.8])) == 1.0


def test_simes_holds_its_rate_on_healthy_scans() -> None:
    """Independent slices: the rate is alpha; slices sharing a subject effect (positive
    dependence) and conformal p-values sharing one calibration set: at most alpha."""
    rng = np.random.default_rng(1)
    trials, m, alpha = 4000, 16, 0.05
    se = 3 * np.sqrt(alpha * (1 - alpha) / trials)
    independent = np.mean([simes(rng.random(m)) <= alpha for _ in range(trials)])
    assert alpha - se <= independent <= alpha + se, independent
    dependent = []
    for _ in range(trials // 4):
        calibration = rng.standard_normal(199)
        scan = 0.8 * rng.standard_normal() + 0.6 * rng.standard_normal(m)  # var 1, shared part
        dependent.append(simes(conformal_p_values(calibration, scan)) <= alpha)
    assert np.mean(dependent) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / len(dependent))


@pytest.mark.parametrize(
    ("m", "n", "scan_alpha"), [(32, 512, 0.01), (32, 3199, 0.01), (16, 16, 0.1), (100, 1120, 0.05)]
)
def test_slices_needed_is_the_fewest_extreme_slices_that_flag_a_scan(
    m: int, n: int, scan_alpha: float
) -> None:
    k = slices_needed(m, n, scan_alpha)
    smallest = 1 / (n + 1)  # a slice scoring above every calibration slice

    def scan_p(extreme: int) -> float:
        return simes(np.r_[np.full(extreme, smallest), np.ones(m - extreme)])

    assert 1 <= k <= m and scan_p(k) <= scan_alpha
    if k > 1:
        assert scan_p(k - 1) > scan_alpha


def test_an_unknown_score_is_named() -> None:
    with pytest.raises(ValueError, match="slice score 'peak'"):
        slice_scores("peak", np.zeros((1, 4, 4)), np.ones((1, 4, 4), bool), 0.1, AnomalyConfig())
