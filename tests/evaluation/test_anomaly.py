"""Anomaly maps and their calibration: the NLL map is the prior's cross-entropy, the conformal
thresholds hit their rates on planted data, maps live only where codes were redrawn, a planted
lesion scores higher than the same slice without it, and the benchmark's metrics agree with
their definitions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from anomaly_run import plant_disc, train_tiny_run

from brainvq.app.pipeline import run_slices
from brainvq.evaluation.anomaly import (
    AnomalyConfig,
    anomaly_maps,
    brain_mask,
    code_nll_map,
    code_threshold,
    residual_map,
    slice_scores,
)
from brainvq.evaluation.anomaly_benchmark import (
    LesionSettings,
    auroc,
    average_precision,
    best_dice,
    dice,
    plant_lesion,
)
from brainvq.evaluation.conformal import (
    conformal_quantile,
    flagged_share,
    risk_control_threshold,
)
from brainvq.inference.codes import load_codes
from brainvq.inference.generate import load_run_models
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.run import RunLayout, load_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("anomaly"))


def test_nll_map_is_the_sum_of_per_position_cross_entropies() -> None:
    torch.manual_seed(0)
    model = GatedPixelCNN(
        PixelCNNConfig(codebook_size=8, n_levels=4, embed_dim=8, channels=8, n_layers=2)
    ).eval()
    codes = torch.randint(0, 8, (5, 4, 6))
    levels = np.array([0, 3, 1, 2, 2])
    nll = code_nll_map(model, codes.numpy().astype(np.int16), levels, batch_size=2)
    with torch.no_grad():
        logits = model(codes, torch.from_numpy(levels))  # (5, K, 4, 6)
    assert nll.shape == (5, 4, 6) and nll.dtype == np.float32
    total = F.cross_entropy(logits, codes, reduction="sum").item()
    assert nll.sum() == pytest.approx(total, rel=1e-5)
    per_position = F.cross_entropy(logits, codes, reduction="none").numpy()
    np.testing.assert_allclose(nll, per_position, rtol=1e-5, atol=1e-6)


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


def test_maps_live_only_where_codes_were_redrawn_and_inside_the_brain() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    healed = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    foreground = np.ones((2, 32, 32), dtype=bool)
    foreground[1, :, :8] = False
    config = AnomalyConfig(mask_sigma=0.0, smooth_sigma=0.0)
    nothing = np.zeros((2, 3, 8, 8), dtype=bool)
    assert not residual_map(images, healed, nothing, foreground, 4, config).any()
    everything = np.ones((2, 3, 8, 8), dtype=bool)
    full = residual_map(images, healed, everything, foreground, 4, config)
    expected = np.abs(images[:, None] / 255.0 - healed / 255.0).mean(axis=1) * foreground
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-6)
    one = nothing.copy()
    one[:, :, 0, 0] = True  # only the top-left cell was redrawn
    smoothed = residual_map(images, healed, one, foreground, 4, replace(config, mask_sigma=1.0))
    assert smoothed[0, :4, :4].min() > 0 and not smoothed[:, 20:, 20:].any()
    assert not smoothed[1, :, :8].any()  # outside slice 1's brain


def test_slice_score_is_the_mean_of_the_top_share() -> None:
    maps = np.zeros((2, 10, 10), dtype=np.float32)
    maps[0, 0, :5] = [5, 4, 3, 2, 1]
    assert slice_scores(maps, 0.03).tolist() == [4.0, 0.0]


def test_brain_mask_fills_holes() -> None:
    image = np.zeros((1, 20, 20), dtype=np.uint8)
    image[0, 4:16, 4:16] = 200
    image[0, 8:12, 8:12] = 0  # a dark ventricle inside
    mask = brain_mask(image, 0.02)
    assert mask[0, 4:16, 4:16].all() and mask.sum() == 144


def test_code_threshold_redraws_the_share_of_training_codes(tiny_run: Path) -> None:
    models = load_run_models(tiny_run)
    train = load_codes(RunLayout(tiny_run).codes, "train")
    config = AnomalyConfig(resample_share=0.1)
    t = code_threshold(models.prior.model, train, config)
    nll = code_nll_map(models.prior.model, train.codes, train.level.astype(np.int64))
    share = float((nll > t).mean())
    assert 0.03 <= share <= 0.1 + 1 / nll.size, share  # ties at the quantile count below it


def test_a_planted_lesion_scores_higher_than_the_same_slice_without_it(tiny_run: Path) -> None:
    models = load_run_models(tiny_run)
    validate = run_slices(load_run(tiny_run), progress=False).require_split("validate")
    middle = validate.subset((validate.level >= 10) & (validate.level <= 21))
    config = AnomalyConfig(n_heal=4)
    train = load_codes(RunLayout(tiny_run).codes, "train")
    t = code_threshold(models.prior.model, train, config)
    brains = brain_mask(middle.images, config.foreground_level)
    lesioned = middle.images.copy()
    for i, brain in enumerate(brains):
        # a dark cavity: the tiny VQ-VAE codes the brightest tissue and a bright disc alike
        centre = tuple(int(c) for c in np.argwhere(brain).mean(axis=0))
        lesioned[i] = plant_disc(middle.images[i], centre, 4, 0)
    levels = middle.level.astype(np.int64)
    clean = anomaly_maps(models, middle.images, levels, t, config, seed=0)
    sick = anomaly_maps(models, lesioned, levels, t, config, seed=0)
    assert (sick.scores > clean.scores).all(), (sick.scores, clean.scores)


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
