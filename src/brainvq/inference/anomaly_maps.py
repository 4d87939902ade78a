"""Anomaly maps from a VQ-VAE and the prior over its codes (settings:
brainvq.run_config.AnomalyConfig, the run config's `anomaly:` section).

A model trained on healthy brains gives low likelihood to the codes of something it never saw.
For slices x: (N, H, W) uint8 at the model's working size:

1. encode -> code maps (N, h, w); the per-code NLL map -log p(code | codes before it, level)
   in nats, from one teacher-forced pass of the prior (`code_nll_map`).
2. heal each map n_heal times (brainvq.inference.healing): in raster order, a code whose NLL
   given the healed prefix is above the code threshold is redrawn from the prior. With a prior
   of whole subjects (`neighbour: previous`) and `context: true` in the settings, the slices
   of a volume are judged and healed in 3D context, bottom to top, each given the healed slice
   below it (steps 1-2: brainvq.inference.context_healing); by default (`context: false`)
   every slice on its own, the slice below not shown.
3. decode the healed maps. For healing r: residual_r = G_s * |x - healed_r| (Gaussian smoothing,
   sigma smooth_sigma latent cells), weighted by G_m * up(weight) (`map_weights`: the weight of
   each latent cell as pixels, smoothed with sigma mask_sigma cells). The weight (setting
   `weight`) is by default how unlikely the input code was: where healing r redrew a code,
   max(nll - threshold, REDRAWN_FLOOR_NATS) with nll the input code's teacher-forced NLL (step
   1), 0 where it kept the code. A redrawn code changes the prefix of the codes after it, so
   healing cascades: on healthy OASIS validate slices it redrew ~42% of the brain's codes where
   ~29% were above the threshold given their own prefix, and weighting every redrawn code alike
   added the difference between two plausible brains wherever the cascade ran; weighted by the
   input code's own NLL, those count little and a lesion's border (whose codes are the most
   unlikely) much, while the floor keeps a large lesion's inside (redrawn once its border was,
   but likely given the lesion's own codes above it) in the map. With `weight: resampled` (runs
   saved before the setting) every redrawn code counts 1. The anomaly map is the mean over
   healings of residual_r * weight_r, zero outside the brain mask (`brain_mask`); higher is
   more anomalous, in units of intensity in [0, 1] times nats (code_nll) or of intensity
   (resampled) (`residual_map`).
4. the slice score: the mean of the map's largest values over score_share of the image's pixels
   (`slice_scores`).

`anomaly_maps` runs steps 1-4. The code threshold and the calibrated pixel and slice thresholds
come from healthy slices (brainvq.evaluation.anomaly_calibration).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from brainvq.inference.code_nll import code_nll_map
from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.context_healing import heal_in_context
from brainvq.inference.healing import heal
from brainvq.inference.run_models import RunModels
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.run_config import AnomalyConfig

MAP_BATCH = 64  # slices whose residuals are held in memory at once
# weight "code_nll": a redrawn code counts at least this much (nats), its own NLL excess where
# larger, so that a large lesion's inside, whose codes are likely given the lesion's codes above
# them and are redrawn only once healing has replaced its border, still counts
# (docs/anomaly_results.md, "The map's weight")
REDRAWN_FLOOR_NATS = 0.5


def brain_mask(images: np.ndarray, level: float) -> np.ndarray:
    """images: (N, H, W) uint8 -> (N, H, W) bool: intensity above level (in [0, 1]) with the
    holes filled, so that dark structures inside the brain (ventricles, a dark lesion) count."""
    bright = np.asarray(images).astype(np.float32) / 255.0 > level  # (N, H, W)
    return np.stack([ndimage.binary_fill_holes(m) for m in bright]) if len(bright) else bright


def smooth(x: np.ndarray, sigma: float, level_sigma: float = 0.0) -> np.ndarray:
    """(N, H, W) float -> the same, each slice Gaussian-smoothed with sigma pixels and, when
    the N slices are consecutive levels of one volume, through them with level_sigma levels
    (0: every slice on its own; both 0: a copy)."""
    x = np.asarray(x, dtype=np.float32)
    if sigma == 0 and level_sigma == 0:
        return x.copy()
    return ndimage.gaussian_filter(x, sigma=(level_sigma, sigma, sigma), mode="nearest")


def upsample(cells: np.ndarray, factor: int) -> np.ndarray:
    """(N, h, w) -> (N, h * factor, w * factor): each latent cell covers factor x factor pixels."""
    return np.repeat(np.repeat(cells, factor, axis=1), factor, axis=2)


def map_weights(
    config: AnomalyConfig,
    resampled: np.ndarray,
    nll: np.ndarray,
    code_threshold: float,
    floor: float = REDRAWN_FLOOR_NATS,
) -> np.ndarray:
    """The weight of each latent cell in each healing's map (step 3 of the module docstring,
    setting `weight`). resampled: (N, R, h, w) bool, the cells each healing redrew; nll:
    (N, h, w) the input codes' teacher-forced NLL in nats. Returns (N, R, h, w): "resampled",
    the redrawn cells (bool); "code_nll", a redrawn cell's max(nll - code_threshold, floor)
    (float32), 0 where the code was kept."""
    if config.weight == "resampled":
        return np.asarray(resampled)
    excess = np.maximum(np.asarray(nll, dtype=np.float32) - np.float32(code_threshold), 0)
    at_least = np.maximum(excess, np.float32(floor))[:, None]  # (N, 1, h, w)
    return np.where(resampled, at_least, np.float32(0)).astype(np.float32)


def residual_map(
    images: np.ndarray,
    healed: np.ndarray,
    weights: np.ndarray,
    foreground: np.ndarray,
    downsample: int,
    config: AnomalyConfig,
    level_stride: int = 0,
) -> np.ndarray:
    """The anomaly map (step 3 of the module docstring).

    images: (N, H, W) uint8; healed: (N, R, H, W) uint8, R healings each; weights: (N, R, h, w)
    >= 0 (bool or float), each latent cell's weight in each healing (`map_weights`);
    foreground: (N, H, W) bool; downsample: pixels per latent cell. level_stride: 0, the slices
    on their own; s > 0, the N slices are consecutive levels of one volume coded s levels a
    latent cell, and the residuals and the weights are smoothed through the levels too, by the
    same sigmas in cells (brainvq.inference.volume_anomaly). Returns (N, H, W) float32 >= 0."""
    n, r, side_h, side_w = healed.shape
    x = np.asarray(images, dtype=np.float32)[:, None] / 255.0  # (N, 1, H, W)
    residual = np.abs(x - healed.astype(np.float32) / 255.0)  # (N, R, H, W)
    weight = upsample(weights.reshape(n * r, *weights.shape[2:]), downsample)
    weight = weight.reshape(n, r, side_h, side_w).astype(np.float32)  # (N, R, H, W)

    def smoothed(v: np.ndarray, cells: float) -> np.ndarray:  # (N, R, H, W), each healing
        if level_stride == 0:
            flat = smooth(v.reshape(n * r, side_h, side_w), cells * downsample)  # (N * R, H, W)
            return flat.reshape(n, r, side_h, side_w)
        parts = [smooth(v[:, k], cells * downsample, cells * level_stride) for k in range(r)]
        return np.stack(parts, axis=1)  # (N, R, H, W)

    residual = smoothed(residual, config.smooth_sigma)
    weight = smoothed(weight, config.mask_sigma)  # (a 0/1 mask, smoothed, stays within [0, 1])
    maps = (residual * weight).mean(axis=1)  # (N, H, W)
    return (maps * foreground).astype(np.float32)


def slice_scores(maps: np.ndarray, share: float) -> np.ndarray:
    """(N, H, W) maps -> (N,) float64: the mean of each map's largest ceil(share * H * W) values."""
    maps = np.asarray(maps)
    flat = maps.reshape(len(maps), -1)  # (N, H * W)
    k = max(1, int(np.ceil(share * flat.shape[1])))
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].astype(np.float64).mean(axis=1)


class MapSet(NamedTuple):
    """What the anomaly maps of N slices were made from, with R = n_heal healings each.

    maps: (N, H, W) float32 >= 0; scores: (N,) float64; nll: (N, h, w) float32 nats (teacher
    forced); codes: (N, h, w) int64 the slices' codes; healed_codes: (N, R, h, w) int64;
    resampled: (N, R, h, w) bool; healed: (N, R, H, W) uint8 decoded; foreground: (N, H, W) bool.
    """

    maps: np.ndarray
    scores: np.ndarray
    nll: np.ndarray
    codes: np.ndarray
    healed_codes: np.ndarray
    resampled: np.ndarray
    healed: np.ndarray
    foreground: np.ndarray


def checked_slices(models: RunModels, images: np.ndarray) -> np.ndarray:
    """images as an array; ValueError unless (N, H, W) uint8 at the model's working size."""
    images = np.asarray(images)
    size = models.vqvae.config.image_size
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (size, size):
        raise ValueError(
            f"images: expected (N, {size}, {size}) uint8 slices (the model's working size), "
            f"got {images.shape} {images.dtype}"
        )
    return images


def foreground_of(
    images: np.ndarray,
    foreground: np.ndarray | None,
    config: AnomalyConfig,
    healed: np.ndarray | None = None,
) -> np.ndarray:
    """The brain masks (N, H, W) bool: `foreground` when given (checked against the images'
    shape), else found from the images (`brain_mask`); with `brain: healed` in the settings and
    healed (N, R, H, W) uint8 given, together with the brain mask of the mean healed slice, holes
    filled: a dark lesion at the brain's edge breaks the slice's own outline and would be left
    out of its own mask, where healing draws tissue again."""
    if foreground is None:
        own = brain_mask(images, config.foreground_level)
        if healed is None or config.brain != "healed" or not len(own):
            return own
        mean = np.asarray(healed, dtype=np.float32).mean(axis=1).round().astype(np.uint8)
        drawn = brain_mask(mean, config.foreground_level)  # (N, H, W)
        return np.stack([ndimage.binary_fill_holes(a | b) for a, b in zip(own, drawn, strict=True)])
    if foreground.shape != images.shape:
        raise ValueError(f"foreground: expected {images.shape} masks, got {foreground.shape}")
    return foreground


def anomaly_maps(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray | None,
    code_threshold: float,
    config: AnomalyConfig,
    *,
    seed: int = 0,
    sampler: str = "cached",
    progress: bool = False,
    threads: int | None = None,
    foreground: np.ndarray | None = None,
    below_of: np.ndarray | None = None,
) -> MapSet:
    """Steps 1-4 of the module docstring for images (N, H, W) uint8 at levels (N,) int (None for
    an unconditional prior). Healing draws come from `seed` (the same maps for the same seed,
    whichever sampler). foreground: (N, H, W) bool brain masks when known (registered volumes),
    else found from the images (`brain_mask`). below_of: (N,) int64, the row of each slice's
    slice below among `images` (-1: none), for a prior with the neighbour and
    config.context: steps 1-2 in 3D context (brainvq.inference.context_healing); None: every
    slice on its own."""
    images = checked_slices(models, images)
    size = images.shape[1]
    options = SamplingOptions(temperature=config.temperature, seed=seed, sampler=sampler)
    if levels is not None:
        levels = np.asarray(levels, dtype=np.int64)
    n, r = len(images), config.n_heal
    codes = encode_images(models.vqvae.model, images).astype(np.int64)  # (N, h, w)
    prior = models.slice_prior.model  # the prior that judges a slice on its own
    if below_of is not None and config.context and prior.config.has_neighbour:
        if np.shape(below_of) != (n,):
            raise ValueError(f"below_of: expected ({n},) rows, got shape {np.shape(below_of)}")
        healing, nll = heal_in_context(
            prior,
            codes,
            levels,
            np.asarray(below_of, dtype=np.int64),
            code_threshold,
            r,
            options=options,
            progress=progress,
            threads=threads,
        )
    else:
        nll = code_nll_map(prior, codes, levels)
        healing = heal(
            prior,
            torch.from_numpy(codes),
            code_threshold,
            r,
            level=None if levels is None else torch.from_numpy(levels),
            progress=progress,
            threads=threads,
            **options.as_keywords(),
        )
    h, w = codes.shape[1:]
    healed_codes = healing.codes.cpu().numpy().reshape(n, r, h, w)
    resampled = healing.resampled.cpu().numpy().reshape(n, r, h, w)
    healed = decode_codes(models.vqvae.model, healing.codes).reshape(n, r, size, size)
    foreground = foreground_of(images, foreground, config, healed)
    maps = np.zeros(images.shape, dtype=np.float32)
    d = models.vqvae.config.downsample
    for start in range(0, n, MAP_BATCH):
        part = slice(start, start + MAP_BATCH)
        weights = map_weights(config, resampled[part], nll[part], code_threshold)
        maps[part] = residual_map(images[part], healed[part], weights, foreground[part], d, config)
    return MapSet(
        maps=maps,
        scores=slice_scores(maps, config.score_share),
        nll=nll,
        codes=codes,
        healed_codes=healed_codes,
        resampled=resampled,
        healed=healed,
        foreground=foreground,
    )
