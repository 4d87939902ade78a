"""What the anomaly benchmark needs besides the maps: synthetic lesions, two baselines, metrics.

Nothing here is used by the calibration or by `brainvq anomaly`: the lesions are one synthetic
kind, for measuring, and the method must not be fitted to them.

Lesions (`plant_lesion`) go into real healthy slices, inside the brain: an ellipse at a random
orientation or an irregular star-shaped blob, of one of several sizes, hyper- or hypo-intense by
a share of the slice's brain intensity range, with a smooth border and a smooth multiplicative
texture. The lesion mask is where the border's blend weight is at least one half, inside the
brain. The assumptions this puts on the benchmark: the lesions are additive changes of intensity
on otherwise untouched anatomy (no mass effect, no deformation of the ventricles), one per slice.

Metrics are over the brain pixels of the test slices: pixel-level average precision (AUPRC),
the best Dice over all thresholds and the Dice at a given mask; slice-level AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from brainvq.inference.anomaly_maps import smooth, upsample
from brainvq.run_config import AnomalyConfig

MIN_LESION_PIXELS = 12
MAX_TRIES = 50


@dataclass(frozen=True)
class LesionSettings:
    """The synthetic lesions' distribution; sizes are shares of the image side."""

    radii: tuple[float, ...] = (0.03, 0.05, 0.08, 0.12)  # mean radius, one drawn per lesion
    radius_jitter: float = 0.2  # radius times U(1 - jitter, 1 + jitter)
    contrast: tuple[float, float] = (0.25, 0.5)  # share of the brain's intensity range
    border: float = 0.2  # smoothing of the border, as a share of the radius (at least 1 px)
    texture: float = 0.3  # amplitude of the multiplicative texture
    texture_scale: float = 0.25  # its smoothness, as a share of the radius


def _shape(side: int, centre: np.ndarray, radius: float, blob: bool, rng) -> np.ndarray:
    """(side, side) bool: an ellipse or a star-shaped blob of mean radius `radius` pixels."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = rng.uniform(0, np.pi)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if not blob:
        aspect = rng.uniform(0.55, 1.0)
        a, b = radius / np.sqrt(aspect), radius * np.sqrt(aspect)
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    phi = np.arctan2(v, u)
    edge = np.ones_like(phi)
    for k in range(2, 6):  # smooth irregular outline: a few random harmonics of the radius
        edge += rng.uniform(0, 0.35 / k * 2) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return np.hypot(u, v) <= radius * edge


def plant_lesion(
    image: np.ndarray, brain: np.ndarray, rng: np.random.Generator, settings: LesionSettings
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Plant one lesion in a slice.

    image: (H, W) uint8 healthy slice; brain: (H, W) bool its brain mask. Returns (the slice with
    the lesion (H, W) uint8, the lesion mask (H, W) bool, a description). ValueError when no
    lesion of at least MIN_LESION_PIXELS fits inside the brain after MAX_TRIES draws.
    """
    side = image.shape[0]
    x = image.astype(np.float64) / 255.0
    inside = x[brain]
    if inside.size < MIN_LESION_PIXELS:
        raise ValueError("plant_lesion: the slice has too little brain for a lesion")
    lo, hi = np.percentile(inside, [1, 99])
    for _ in range(MAX_TRIES):
        radius = side * rng.choice(settings.radii)
        radius *= rng.uniform(1 - settings.radius_jitter, 1 + settings.radius_jitter)
        core = ndimage.binary_erosion(brain, iterations=max(1, int(radius * 0.5)))
        candidates = np.argwhere(core if core.any() else brain)
        centre = candidates[rng.integers(len(candidates))].astype(np.float64)
        blob = bool(rng.integers(2))
        shape = _shape(side, centre, radius, blob, rng)
        weight = ndimage.gaussian_filter(
            shape.astype(np.float64), max(1.0, settings.border * radius)
        )
        weight *= brain
        mask = (weight >= 0.5) & brain
        if mask.sum() >= MIN_LESION_PIXELS:
            break
    else:
        raise ValueError("plant_lesion: no lesion fitted inside the brain")
    sign = 1.0 if rng.integers(2) else -1.0
    delta = rng.uniform(*settings.contrast) * max(hi - lo, 0.1)
    noise = ndimage.gaussian_filter(
        rng.standard_normal(image.shape), max(1.0, settings.texture_scale * radius)
    )
    noise /= max(noise.std(), 1e-9)
    texture = 1 + settings.texture * noise
    out = np.clip(x + sign * delta * weight * texture, 0, 1)
    info = {
        "kind": "blob" if blob else "ellipse",
        "radius_px": round(float(radius), 2),
        "intensity": "hyper" if sign > 0 else "hypo",
        "contrast": round(float(delta), 4),
        "pixels": int(mask.sum()),
    }
    return (out * 255).round().astype(np.uint8), mask, info


def reconstruction_residual_map(
    images: np.ndarray,
    reconstructions: np.ndarray,
    foreground: np.ndarray,
    downsample: int,
    config: AnomalyConfig,
) -> np.ndarray:
    """The baseline without a prior: |x - decode(encode(x))|, smoothed as the anomaly map's
    residuals are, zero outside the brain. images, reconstructions: (N, H, W) uint8."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    r = np.asarray(reconstructions, dtype=np.float32) / 255.0
    return smooth(np.abs(x - r), config.smooth_sigma * downsample) * foreground


def nll_pixel_map(
    nll: np.ndarray, foreground: np.ndarray, downsample: int, config: AnomalyConfig
) -> np.ndarray:
    """The baseline without healing: the code NLL map (N, h, w) as pixels, smoothed as the
    anomaly map's residuals are, zero outside the brain."""
    return smooth(upsample(nll, downsample), config.smooth_sigma * downsample) * foreground


def _ranked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """True and false positives at each distinct threshold, highest first, and the positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), int(labels.sum())


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: sum_k (R_k - R_k-1) P_k over
    the distinct thresholds (ties counted together, as scikit-learn does)."""
    tp, fp, positives = _ranked(scores, labels)
    if positives == 0:
        raise ValueError("average_precision: no positive labels")
    recall = tp / positives
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_dice(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best Dice of (scores >= t) against labels over all thresholds t: (Dice, t)."""
    tp, fp, positives = _ranked(scores, labels)
    if positives == 0:
        raise ValueError("best_dice: no positive labels")
    dice = 2 * tp / (tp + fp + positives)
    k = int(np.argmax(dice))
    thresholds = np.sort(np.unique(np.asarray(scores, dtype=np.float64)))[::-1]
    return float(dice[k]), float(thresholds[k])


def dice(mask: np.ndarray, labels: np.ndarray) -> float:
    """2 |mask & labels| / (|mask| + |labels|); 1 when both are empty."""
    mask, labels = np.asarray(mask, dtype=bool), np.asarray(labels, dtype=bool)
    total = mask.sum() + labels.sum()
    return 1.0 if total == 0 else float(2 * (mask & labels).sum() / total)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc: needs both positive and negative labels")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
