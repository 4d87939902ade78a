"""Anomaly maps (brainvq.inference.anomaly_maps): the NLL map is the prior's cross-entropy,
maps live only where codes were redrawn and inside the brain, the slice score is the mean of the
map's top share, the brain mask fills its holes, and a planted lesion scores higher than the
same slice without it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from anomaly_run import plant_disc

from brainvq.app.run_data import run_slices
from brainvq.evaluation.anomaly_calibration import code_threshold
from brainvq.inference.anomaly_maps import (
    anomaly_maps,
    brain_mask,
    code_nll_map,
    residual_map,
    slice_scores,
)
from brainvq.inference.codes import load_codes
from brainvq.inference.run_models import load_run_models
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.run import RunLayout, load_run
from brainvq.run_config import AnomalyConfig


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


def test_a_planted_lesion_scores_higher_than_the_same_slice_without_it(
    anomaly_tiny_run: Path,
) -> None:
    models = load_run_models(anomaly_tiny_run)
    validate = run_slices(load_run(anomaly_tiny_run), progress=False).require_split("validate")
    middle = validate.subset((validate.level >= 10) & (validate.level <= 21))
    config = AnomalyConfig(n_heal=4)
    train = load_codes(RunLayout(anomaly_tiny_run).codes, "train")
    t = code_threshold(models.prior.model, train, config)
    brains = brain_mask(middle.images, config.foreground_level)
    lesioned = middle.images.copy()
    for i, brain in enumerate(brains):
        # a dark cavity: the tiny VQ-VAE codes the brightest tissue and a bright disc alike;
        # radius 6: on the demo cohort as rendered on OASIS's frame, a smaller disc can sit in
        # the dark ventricles; the least raised of the 12 scores was 0.80x / 0.91x / 1.82x its
        # clean self at radius 4 / 5 / 6 in fp32 (AVX2), 0.90x / 2.0x / 4.3x in bf16
        centre = tuple(int(c) for c in np.argwhere(brain).mean(axis=0))
        lesioned[i] = plant_disc(middle.images[i], centre, 6, 0)
    levels = middle.level.astype(np.int64)
    clean = anomaly_maps(models, middle.images, levels, t, config, seed=0)
    sick = anomaly_maps(models, lesioned, levels, t, config, seed=0)
    assert (sick.scores > clean.scores).all(), (sick.scores, clean.scores)
