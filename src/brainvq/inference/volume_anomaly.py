"""Anomaly maps of volumes with a 3D run: each volume's codes judged, healed and decoded whole.

A 3D VQ-VAE codes a stack of consecutive frame levels as one code volume, latent level j of the
run holding frame levels s*j to s*j + s - 1 (s the level stride; brainvq.inference.level_stacks),
and the run's prior models each latent level given the latent level below (`neighbour:
previous`; the lowest alone). The maps of slices (brainvq.inference.anomaly_maps) carry over
with the code volume in place of the code map. For each volume, its slices (L, H, W) uint8 at
consecutive frame levels a .. a + L - 1:

1. padded to whole latent levels of the frame (border slices repeated) and encoded whole: the
   code volume (D', h, w) (level_stacks.pad_stack);
2. judged and healed latent level by latent level, bottom to top, each given the healed latent
   level below it as the prior's context, n_heal times (brainvq.inference.context_healing, the
   way slices are in 3D context): the NLL of every code given the codes before it in its
   latent level, its latent level and the healed latent level below (the mean over the
   healings below); a code above the code threshold given the healed prefix is redrawn;
3. each healing's code volume decoded whole and cropped back to the L levels;
4. the map as for slices: the residual |x - healed| and the redrawn cells as voxels (a cell is
   s levels by f x f pixels), both smoothed with the settings' sigmas in latent cells, in the
   plane and through the levels (anomaly_maps.residual_map with the level stride), their
   product averaged over the healings, zero outside the brain mask.

Every slice then has what a map set gives a 2D slice (a MapSet row): its map, and the codes,
NLL and healings of the latent level that holds it, so the slice and scan decisions, the
calibration and the shift check, which read slices, take a 3D run's maps unchanged. The
uniforms of the draws come from the seed for all the volumes' latent levels at once, as `heal`
draws them, so the same volumes and seed give the same maps whichever sampler.
"""

from __future__ import annotations

import numpy as np

from brainvq.inference.anomaly_maps import (
    MapSet,
    checked_slices,
    foreground_of,
    map_weights,
    residual_map,
    slice_scores,
)
from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.context_healing import heal_in_context
from brainvq.inference.level_stacks import pad_stack, reconstruct_stack
from brainvq.inference.run_models import RunModels
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.models.vqvae import VQVAE
from brainvq.run_config import AnomalyConfig


def volume_rows(group: np.ndarray, levels: np.ndarray) -> list[np.ndarray]:
    """group: (N,) the volume (or subject) of each slice; levels: (N,) its frame level -> each
    volume's rows in level order, volumes in the order they first appear. ValueError naming
    the volume when its levels are not consecutive, each once (a 3D run codes them as one)."""
    group, levels = np.asarray(group), np.asarray(levels, dtype=np.int64)
    if group.shape != levels.shape or group.ndim != 1:
        raise ValueError(
            f"group, levels: expected two (N,) arrays, got {group.shape} and {levels.shape}"
        )
    names, first_seen, inverse = np.unique(group, return_index=True, return_inverse=True)
    out = []
    for k in np.argsort(first_seen, kind="stable"):
        rows = np.flatnonzero(inverse == k)
        rows = rows[np.argsort(levels[rows], kind="stable")]
        lv = levels[rows]
        if lv[0] < 0 or not np.array_equal(lv, np.arange(lv[0], lv[0] + len(lv))):
            raise ValueError(
                f"volume {str(names[k])!r} has levels {lv.tolist()}: a 3D run codes a volume's "
                "slices as one stack of consecutive frame levels, each once"
            )
        out.append(rows)
    return out


def volume_anomaly_maps(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray,
    group: np.ndarray,
    code_threshold: float,
    config: AnomalyConfig,
    *,
    seed: int = 0,
    sampler: str = "cached",
    progress: bool = False,
    threads: int | None = None,
    foreground: np.ndarray | None = None,
) -> MapSet:
    """Steps 1-4 of the module docstring for the slices images (N, H, W) uint8 of a 3D run's
    volumes: levels (N,) int their frame levels, group (N,) the volume of each (its slices
    consecutive levels, any order). foreground: (N, H, W) bool brain masks when known, else
    found from the images and their healings (anomaly_maps.foreground_of). Returns a MapSet in
    the input's order."""
    images = checked_slices(models, images)
    size = images.shape[1]
    vqvae, prior = models.vqvae.model, models.anomaly_prior.model
    s, f, r = models.level_stride, models.vqvae.config.downsample, config.n_heal
    stacks = volume_rows(group, levels)
    padded = [pad_stack(images[rows], int(levels[rows[0]]), s) for rows in stacks]
    volumes = [encode_images(vqvae, p.volume[None])[0].astype(np.int64) for p in padded]
    starts = np.cumsum([0, *(len(v) for v in volumes)])  # each volume's first latent row
    codes = np.concatenate(volumes)  # (M, h, w): every volume's latent levels, in turn
    firsts = [p.first_latent for p in padded]
    latent = np.concatenate([a + np.arange(len(v)) for a, v in zip(firsts, volumes, strict=True)])
    below_of = np.full(len(codes), -1, dtype=np.int64)  # the lowest latent level: alone
    if prior.config.has_neighbour:
        for start, stop in zip(starts[:-1], starts[1:], strict=True):
            below_of[start + 1 : stop] = np.arange(start, stop - 1)
    options = SamplingOptions(temperature=config.temperature, seed=seed, sampler=sampler)
    healing, nll = heal_in_context(
        prior,
        codes,
        latent if prior.config.n_levels > 0 else None,
        below_of,
        code_threshold,
        r,
        options=options,
        progress=progress,
        threads=threads,
    )
    m, h, w = codes.shape
    healed_codes = healing.codes.cpu().numpy().reshape(m, r, h, w)
    resampled = healing.resampled.cpu().numpy().reshape(m, r, h, w)
    n = len(images)
    out_codes = np.zeros((n, h, w), dtype=np.int64)
    out_nll = np.zeros((n, h, w), dtype=np.float32)
    out_healed_codes = np.zeros((n, r, h, w), dtype=np.int64)
    out_resampled = np.zeros((n, r, h, w), dtype=bool)
    healed = np.zeros((n, r, size, size), dtype=np.uint8)
    maps = np.zeros(images.shape, dtype=np.float32)
    for rows, stack, start, stop in zip(stacks, padded, starts[:-1], starts[1:], strict=True):
        cell = start + (stack.before + np.arange(len(rows))) // s  # (L,) each slice's latent row
        whole = decode_codes(vqvae, healed_codes[start:stop].transpose(1, 0, 2, 3))  # (R, D, H, W)
        healed[rows] = stack.crop(whole.transpose(1, 0, 2, 3))  # (L, R, H, W)
        out_codes[rows], out_nll[rows] = codes[cell], nll[cell]
        out_healed_codes[rows], out_resampled[rows] = healed_codes[cell], resampled[cell]
    foreground = foreground_of(images, foreground, config, healed)
    for rows in stacks:  # each volume's slices in level order: smoothed through them
        weights = map_weights(config, out_resampled[rows], out_nll[rows], code_threshold)
        maps[rows] = residual_map(
            images[rows], healed[rows], weights, foreground[rows], f, config, s
        )
    return MapSet(
        maps=maps,
        scores=slice_scores(maps, config.score_share),
        nll=out_nll,
        codes=out_codes,
        healed_codes=out_healed_codes,
        resampled=out_resampled,
        healed=healed,
        foreground=foreground,
    )


def volume_reconstructions(
    model: VQVAE, images: np.ndarray, levels: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """(N, H, W) uint8: each slice's reconstruction by the 3D VQ-VAE `model`, its volume coded
    whole (level_stacks.reconstruct_stack; images, levels, group as volume_anomaly_maps')."""
    out = np.zeros(np.shape(images), dtype=np.uint8)
    for rows in volume_rows(group, levels):
        out[rows] = reconstruct_stack(model, np.asarray(images[rows]), int(levels[rows[0]]))[0]
    return out
