"""The anomaly maps' calibration and benchmark: the conformal thresholds hit their rates on
planted data, the code threshold redraws the share of training codes it says, planted lesions
lie inside the brain, and the benchmark's metrics agree with their definitions. (The maps
themselves: tests/inference/test_anomaly_maps.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.evaluation.anomaly_benchmark import (
    LesionSettings,
    auroc,
    average_precision,
    best_dice,
    dice,
    plant_lesion,
)
from brainvq.evaluation.anomaly_calibration import code_threshold
from brainvq.evaluation.conformal import (
    conformal_quantile,
    flagged_share,
    risk_control_threshold,
)
from brainvq.inference.anomaly_maps import code_nll_map
from brainvq.inference.codes import load_codes
from brainvq.inference.run_models import load_run_models
from brainvq.run import RunLayout
from brainvq.run_config import AnomalyConfig


def test_split_conformal_quantile_hits_its_rate() -> None:
    rng = np.random.default_rng(0)
    trials, n, alpha = 4000, 49, 0.1
    scores = rng.standard_normal((trials, n + 1))
    thresholds = np.array([conformal_quantile(s[:n], alpha) for s in scores])
    rate = float((scores[:, n] > thresholds).mean())
    se = np.sqrt(alpha * (1 - alpha) / trials)
    # exchangeable continuous scores: the rate is alpha - (fraction lost to rounding k), here 0
    assert alpha - 1 / (n + 1) - 3 * se <= rate <= alpha + 3 * se, rate


def _planted_slices(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n healthy 'slices': a random number of brain pixels each, values sharing a slice effect
    (pixels of one slice are not independent), some slices without brain."""
    counts = rng.integers(30, 120, n)
    counts[rng.random(n) < 0.05] = 0
    effect = np.repeat(rng.standard_normal(n), counts)
    values = np.abs(effect + rng.standard_normal(counts.sum()))
    return values, counts


def test_risk_control_hits_its_pixel_rate_on_planted_slices() -> None:
    rng = np.random.default_rng(1)
    trials, n, alpha = 1500, 39, 0.1
    shares = []
    for _ in range(trials):
        values, counts = _planted_slices(rng, n + 1)
        split = counts[:n].sum()
        t = risk_control_threshold(values[:split], counts[:n], alpha)
        shares.append(flagged_share(values[split:], counts[n:], t)[0])
    shares = np.array(shares)
    se = shares.std() / np.sqrt(trials)
    # E[share] <= alpha, and no more than 2 / (n + 1) below it (Angelopoulos et al., Thm 2)
    assert alpha - 2 / (n + 1) - 3 * se <= shares.mean() <= alpha + 3 * se, shares.mean()


def test_risk_control_threshold_is_the_smallest_allowed_value() -> None:
    rng = np.random.default_rng(2)
    counts = np.array([5, 0, 7, 3, 6, 4, 5, 8, 2, 6])
    values = rng.integers(0, 6, counts.sum()).astype(np.float64)  # many ties
    alpha = 0.35
    t = risk_control_threshold(values, counts, alpha)

    def allowed(x: float) -> bool:
        return (flagged_share(values, counts, x).sum() + 1) / (len(counts) + 1) <= alpha

    assert allowed(t)
    assert not any(allowed(v) for v in np.unique(values) if v < t)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: conformal_quantile(np.ones(10), 0.01), "at least 99"),
        (lambda: conformal_quantile(np.ones(10), 1.0), "alpha"),
        (lambda: conformal_quantile(np.array([1.0, np.nan]), 0.5), "finite"),
        (lambda: risk_control_threshold(np.ones(3), np.array([2]), 0.5), "values"),
        (lambda: risk_control_threshold(np.ones(3), np.array([3]), 0.2), "at least 4"),
        (lambda: risk_control_threshold(np.ones(3), np.array([-1, 4]), 0.5), "counts"),
    ],
)
def test_threshold_errors_say_what_is_wrong(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_code_threshold_redraws_the_share_of_training_codes(anomaly_tiny_run: Path) -> None:
    models = load_run_models(anomaly_tiny_run)
    train = load_codes(RunLayout(anomaly_tiny_run).codes, "train")
    config = AnomalyConfig(resample_share=0.1)
    t = code_threshold(models.prior.model, train, config)
    nll = code_nll_map(models.prior.model, train.codes, train.level.astype(np.int64))
    share = float((nll > t).mean())
    assert 0.03 <= share <= 0.1 + 1 / nll.size, share  # ties at the quantile count below it


def test_lesions_lie_inside_the_brain_and_change_it() -> None:
    rng = np.random.default_rng(4)
    image = np.zeros((64, 64), dtype=np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    brain = (yy - 32) ** 2 / 26**2 + (xx - 32) ** 2 / 20**2 <= 1
    image[brain] = 120
    for _ in range(20):
        out, mask, info = plant_lesion(image, brain, rng, LesionSettings())
        assert mask.any() and not (mask & ~brain).any()
        assert (out[mask] != 120).mean() > 0.9
        assert (out[~brain] == 0).all()
        assert info["kind"] in ("ellipse", "blob") and info["intensity"] in ("hyper", "hypo")


def test_benchmark_metrics_match_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    labels = rng.random(500) < 0.2
    scores = np.round(labels * 0.7 + rng.random(500), 1)  # with ties
    assert average_precision(scores, labels) == pytest.approx(
        sklearn_metrics.average_precision_score(labels, scores)
    )
    assert auroc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))
    best, t = best_dice(scores, labels)
    assert best == pytest.approx(dice(scores >= t, labels))
    assert best == pytest.approx(max(dice(scores >= v, labels) for v in np.unique(scores)))
