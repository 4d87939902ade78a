"""Generation-quality metrics: how real, how well placed, how sharp and how novel samples are.

Nearest-neighbour SSIM to real slices is not a realism measure here: the mean training image scores
higher against real test slices than real slices of other subjects do, so it rewards blur. The
measures below each catch a different failure:

- Frechet distance (FD) in the features of a level classifier trained on the real training slices:
  realism of the whole set. Reported beside a ceiling (real validate vs real test) and a floor
  (code maps drawn independently per position from the code histogram, decoded).
- Level accuracy: whether a conditional prior draws the level it was asked for (the level
  classifier's prediction, brainvq.inference.levels, which production uses too), within 2
  levels (2 mm on the frame's grid); and the level error, the mean distance in levels between
  the level drawn and the level asked for. Over a whole-brain run's 150 levels, neighbouring
  levels 1 mm apart look alike, so the error says how far off a sample is where the accuracy
  only says whether it is within 2 mm.
- Sharpness ratio: high-frequency power of generated vs real slices; blurry samples fall far
  below 1.
- Memorisation: SSIM of each sample to its nearest training slice, beside the same figure for real
  validate slices; samples above a threshold are near copies.

Images everywhere are (N, H, W) uint8, or float in [0, 1]; one set shares one size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import torch

from brainvq.inference.levels import as_float, box_downsample, predict_levels, run_classifier
from brainvq.metrics import ssim
from brainvq.models.level_classifier import LevelClassifier

INFERENCE_BATCH = 256  # slices at once in the spectra and in the SSIM to the candidates
TRAIN_CHUNK = 1024  # training slices compared with the queries at once (64 MB at 128x128)


def check_levels(levels: np.ndarray, n: int, n_levels: int, name: str) -> np.ndarray:
    levels = np.asarray(levels)
    if levels.shape != (n,) or not np.issubdtype(levels.dtype, np.integer):
        raise ValueError(
            f"{name}: expected ({n},) integer levels, got shape {levels.shape} {levels.dtype}"
        )
    if levels.min() < 0 or levels.max() >= n_levels:
        raise ValueError(
            f"{name}: levels must lie in [0, {n_levels}), got [{levels.min()}, {levels.max()}]"
        )
    return levels.astype(np.int64)


def extract_features(model: LevelClassifier, images: np.ndarray) -> np.ndarray:
    """images: (N, H, W) uint8 | float [0, 1] -> (N, F) float64 pooled penultimate features."""
    return run_classifier(model, images, logits=False).double().numpy()


def level_accuracy(
    model: LevelClassifier, images: np.ndarray, levels: np.ndarray, tolerance: int = 2
) -> float:
    """Share of slices whose predicted level lies within `tolerance` of the level asked for.

    Args:
        images: (N, H, W) uint8 | float [0, 1] slices generated (or taken) at `levels`.
        levels: (N,) int level each slice should show.
        tolerance: largest accepted |predicted - asked| (0 is exact accuracy).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance: expected >= 0, got {tolerance}")
    target = check_levels(levels, len(images), model.config.n_levels, "levels")
    return float(np.mean(np.abs(predict_levels(model, images) - target) <= tolerance))


def level_error(model: LevelClassifier, images: np.ndarray, levels: np.ndarray) -> float:
    """Mean |predicted - asked| level (levels; times the frame's level spacing: millimetres).

    Args:
        images: (N, H, W) uint8 | float [0, 1] slices generated (or taken) at `levels`.
        levels: (N,) int level each slice should show.
    """
    target = check_levels(levels, len(images), model.config.n_levels, "levels")
    return float(np.mean(np.abs(predict_levels(model, images) - target)))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    FD = |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)), with sample means and covariances
    (ddof 1), eps added to both covariance diagonals so singular ones stay well defined, and the
    real part of scipy's matrix square root. FD grows with the number of features and shrinks
    with more samples: compare distances computed from sets of similar sizes.

    Args:
        feats_a: (N, F) features, N >= 2.
        feats_b: (M, F) features, M >= 2.
    """
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"{name}: expected (N, F) features with N >= 2, got shape {f.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: feats_a has {a.shape[1]}, feats_b {b.shape[1]}")
    eye = eps * np.eye(a.shape[1])
    cov_a = np.atleast_2d(np.cov(a, rowvar=False)) + eye  # (F, F)
    cov_b = np.atleast_2d(np.cov(b, rowvar=False)) + eye  # (F, F)
    covmean = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
    diff = a.mean(axis=0) - b.mean(axis=0)
    fd = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    if not np.isfinite(fd):
        raise ValueError("Frechet distance is not finite: check the features for NaN or inf")
    # Rounding in sqrtm can leave a tiny negative value for identical sets; FD itself is >= 0.
    return max(fd, 0.0)


def high_frequency_share(images: np.ndarray) -> np.ndarray:
    """Share of each slice's spectral power above a quarter of the Nyquist frequency.

    The power spectrum |FFT(x - mean(x))|^2 of an S x S slice is averaged over rings of integer
    radius r = 1 .. S/2 (in frequency bins, S/2 being Nyquist; the corners beyond Nyquist are
    left out) to a radial profile P(r); the share is sum_{r > S/8} P(r) / sum_r P(r). A constant
    slice has share 0.

    Args:
        images: (N, S, S) uint8 | float [0, 1].
    Returns:
        (N,) float64 in [0, 1].
    """
    x = as_float(images, "images")
    n, h, w = x.shape
    if h != w or h < 8:
        raise ValueError(f"images: expected square slices of side >= 8, got {h}x{w}")
    freq = np.fft.fftfreq(h) * h  # bin index, Nyquist at h / 2
    radius = np.rint(np.hypot(freq[:, None], freq[None, :])).astype(np.int64).ravel()  # (S*S,)
    n_bins = h // 2 + 1
    inside = radius < n_bins
    counts = np.bincount(radius[inside], minlength=n_bins)
    ring_mean = np.zeros((h * w, n_bins))
    ring_mean[np.flatnonzero(inside), radius[inside]] = 1.0 / counts[radius[inside]]
    shares = np.empty(n)
    for start in range(0, n, INFERENCE_BATCH):
        chunk = x[start : start + INFERENCE_BATCH].astype(np.float64)
        chunk = chunk - chunk.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(chunk)) ** 2  # (B, S, S)
        profile = power.reshape(len(chunk), h * w) @ ring_mean  # (B, S/2 + 1)
        total = profile[:, 1:].sum(axis=1)
        high = profile[:, h // 8 + 1 :].sum(axis=1)
        shares[start : start + len(chunk)] = np.divide(
            high, total, out=np.zeros_like(high), where=total > 0
        )
    return shares


def sharpness_ratio(generated: np.ndarray, real: np.ndarray) -> float:
    """mean high_frequency_share(generated) / mean high_frequency_share(real); near 1 is good.

    Both sets: (N, S, S) uint8 | float [0, 1], the same S. Blurry samples score well below 1.
    """
    gen, ref = as_float(generated, "generated"), as_float(real, "real")
    if gen.shape[1:] != ref.shape[1:]:
        raise ValueError(f"slice sizes differ: generated {gen.shape[1:]}, real {ref.shape[1:]}")
    real_share = float(high_frequency_share(ref).mean())
    if real_share == 0.0:
        raise ValueError("real: the real slices have no high-frequency power (all constant?)")
    return float(high_frequency_share(gen).mean()) / real_share


@torch.no_grad()
def nearest_train_ssim(
    queries: np.ndarray,
    train: np.ndarray,
    candidates: int = 8,
    preselect_size: int = 32,
    train_chunk: int = TRAIN_CHUNK,
) -> np.ndarray:
    """SSIM of each query slice to its nearest training slice (the memorisation measure).

    Candidates are the `candidates` training slices closest in L2 distance after box-downsampling
    to preselect_size x preselect_size; the SSIM (`brainvq.metrics.ssim`: 11x11 Gaussian window,
    sigma 1.5, data range 1) is computed at full size against those only, and the largest is kept.
    A query that is a training slice scores 1. The training slices are read train_chunk at a
    time (a memory-mapped split is never read whole): the running candidates of each chunk are
    merged with the best so far, which gives the candidates of the whole set.

    Args:
        queries: (N, H, W) uint8 | float [0, 1].
        train: (M, H, W) uint8 | float [0, 1], the same H, W; H >= 11, and a multiple of
            preselect_size when larger (smaller slices are preselected at full size). May be a
            memory map.
    Returns:
        (N,) float64, the nearest-neighbour SSIM of each query.
    """
    q = as_float(queries, "queries")
    if train.ndim != 3 or len(train) == 0:
        raise ValueError(f"train: expected a non-empty (N, H, W) array, got shape {train.shape}")
    if q.shape[1:] != train.shape[1:]:
        raise ValueError(f"slice sizes differ: queries {q.shape[1:]}, train {train.shape[1:]}")
    if candidates < 1:
        raise ValueError(f"candidates: expected >= 1, got {candidates}")
    k = min(candidates, len(train))
    small = min(preselect_size, q.shape[1])
    q_small = torch.from_numpy(box_downsample(q, small, "queries")).flatten(1)  # (N, P*P)
    best_dist = torch.full((len(q), 0), float("inf"))  # (N, <=k) the candidates so far
    best_idx = torch.zeros((len(q), 0), dtype=torch.int64)
    for t_start in range(0, len(train), train_chunk):
        t = as_float(np.asarray(train[t_start : t_start + train_chunk]), "train")
        t_small = torch.from_numpy(box_downsample(t, small, "train")).flatten(1)  # (m, P*P)
        t_norm = (t_small * t_small).sum(dim=1)  # (m,)
        dist = t_norm[None, :] - 2.0 * q_small @ t_small.T  # (N, m), |q|^2 omitted: same per row
        dist = torch.cat([best_dist, dist], dim=1)
        idx = torch.cat([best_idx, torch.arange(t_start, t_start + len(t)).expand(len(q), -1)], 1)
        top = dist.topk(min(k, dist.shape[1]), dim=1, largest=False).indices  # (N, k)
        best_dist, best_idx = dist.gather(1, top), idx.gather(1, top)
    q_full = torch.from_numpy(q).unsqueeze(1)  # (N, 1, H, W)
    chunk = max(1, INFERENCE_BATCH // k)
    best = []
    for start in range(0, len(q), chunk):
        idx = best_idx[start : start + chunk].flatten()  # (B*k,)
        rows, where = np.unique(idx.numpy(), return_inverse=True)
        picked = torch.from_numpy(as_float(np.asarray(train[rows]), "train"))[where]
        queries_rep = q_full[start : start + chunk].repeat_interleave(k, dim=0)  # (B*k, 1, H, W)
        scores = ssim(queries_rep, picked.unsqueeze(1)).reshape(-1, k)  # (B, k)
        best.append(scores.max(dim=1).values)
    return torch.cat(best).double().numpy()


def generation_report(
    classifier: LevelClassifier,
    generated: np.ndarray,
    generated_levels: np.ndarray | None,
    real_test: np.ndarray,
    real_test_levels: np.ndarray,
    real_validate: np.ndarray,
    train_images: np.ndarray,
    floor_images: np.ndarray,
    near_copy_threshold: float = 0.95,
) -> dict[str, Any]:
    """All generation metrics of one sample set, with their real-data references.

    Args:
        classifier: a level classifier trained on the training slices.
        generated: (N, H, W) uint8 samples.
        generated_levels: (N,) int level each sample was drawn for, or None for an unconditional
            prior (level_accuracy is then None).
        real_test, real_test_levels: (T, H, W) real test slices and their levels: the reference.
        real_validate: (V, H, W) real slices of other subjects: the FD ceiling and the real
            memorisation figure. Use about as many as `generated` (FD depends on sample size).
        train_images: (M, H, W) the training slices, for memorisation.
        floor_images: (Q, H, W) decoded code maps drawn independently per position from the code
            histogram: the FD floor.
        near_copy_threshold: a sample whose nearest-training SSIM is >= this is a near copy.
    Returns:
        dict with fd, fd_ceiling, fd_floor (FD to real_test), level_accuracy and level_error
        (None without generated_levels), level_accuracy_real and level_error_real (real_test),
        sharpness_ratio (generated / real_test),
        memorisation_ssim_mean, memorisation_ssim_real_mean (real_validate), near_copies (count),
        n_generated.
    """
    if not 0.0 < near_copy_threshold <= 1.0:
        raise ValueError(f"near_copy_threshold: expected in (0, 1], got {near_copy_threshold}")
    test_feats = extract_features(classifier, real_test)
    memorisation = nearest_train_ssim(generated, train_images)
    accuracy = error = None
    if generated_levels is not None:
        accuracy = level_accuracy(classifier, generated, generated_levels)
        error = level_error(classifier, generated, generated_levels)
    return {
        "fd": frechet_distance(extract_features(classifier, generated), test_feats),
        "fd_ceiling": frechet_distance(extract_features(classifier, real_validate), test_feats),
        "fd_floor": frechet_distance(extract_features(classifier, floor_images), test_feats),
        "level_accuracy": accuracy,
        "level_accuracy_real": level_accuracy(classifier, real_test, real_test_levels),
        "level_error": error,
        "level_error_real": level_error(classifier, real_test, real_test_levels),
        "sharpness_ratio": sharpness_ratio(generated, real_test),
        "memorisation_ssim_mean": float(memorisation.mean()),
        "memorisation_ssim_real_mean": float(
            nearest_train_ssim(real_validate, train_images).mean()
        ),
        "near_copies": int((memorisation >= near_copy_threshold).sum()),
        "n_generated": len(generated),
    }
