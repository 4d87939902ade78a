"""Healing the slices of volumes in 3D context: slice k healed given the healed slice k - 1.

A prior with the neighbour (brainvq.models.neighbour_map) judges a code of slice k by the codes
before it and by the whole of slice k - 1. For the anomaly maps of a volume
(brainvq.inference.anomaly_maps) slice k - 1 is given as healing left it, not as it came: a
lesion that spans several slices then stays a surprise in each of them, instead of being
explained away by the lesion in the slice below.

The slices are healed in waves: first every slice with no slice below (the lowest of each
volume), then every slice whose slice below is healed, and so on; healing r of slice k reads
healing r of slice k - 1. The uniforms of the draws are those `heal` would draw for all
N x n_heal maps from the seed, so a prior without the neighbour (or slices without any below)
heals exactly as in one call of `heal`.
"""

from __future__ import annotations

import numpy as np
import torch

from brainvq.inference.code_nll import code_nll_map
from brainvq.inference.healing import Healing, heal
from brainvq.inference.sampling import draw_uniforms
from brainvq.inference.sampling_options import DEFAULT_OPTIONS, SamplingOptions
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.progress import Bar


def chain_depth(below_of: np.ndarray) -> np.ndarray:
    """below_of: (N,) int64, the row of each slice's slice below (-1: none) -> (N,) int64, how
    many slices lie below each one (0: the lowest). ValueError on a cycle."""
    below_of = np.asarray(below_of, dtype=np.int64)
    depth = np.where(below_of < 0, 0, -1)
    for _ in range(len(below_of)):
        todo = depth < 0
        if not todo.any():
            return depth
        ready = todo & (depth[np.maximum(below_of, 0)] >= 0)
        depth[ready] = depth[below_of[ready]] + 1
    if (depth < 0).any():
        raise ValueError("below_of: the slices below form a cycle")
    return depth


def heal_in_context(
    prior: GatedPixelCNN,
    codes: np.ndarray,
    levels: np.ndarray | None,
    below_of: np.ndarray,
    threshold: float,
    n_heal: int,
    *,
    options: SamplingOptions = DEFAULT_OPTIONS,
    progress: bool = False,
    threads: int | None = None,
) -> tuple[Healing, np.ndarray]:
    """Heal code maps (N, h, w) n_heal times each, slice k given healing r of slice below_of[k]
    (see the module docstring); levels: (N,) int64 or None; options: how `heal` draws (its
    uniforms from options.seed).

    Returns (the Healing, rows b * n_heal + r as `heal` gives them; the NLL map (N, h, w)
    float32 nats: -log p(code | codes before it, level, healed slice below), the mean over the
    healings of the slice below)."""
    n, h, w = codes.shape
    r = n_heal
    codes_t = torch.from_numpy(np.asarray(codes, dtype=np.int64))
    level_t = None if levels is None else torch.from_numpy(np.asarray(levels, dtype=np.int64))
    uniforms = draw_uniforms(n * r, (h, w), options.seed).view(n, r, h, w)
    healed = torch.zeros(n, r, h, w, dtype=torch.int64)
    resampled = torch.zeros(n, r, h, w, dtype=torch.bool)
    heal_nll = torch.zeros(n, r, h, w, dtype=torch.float32)
    nll = np.zeros((n, h, w), dtype=np.float32)
    depth = chain_depth(below_of)
    with Bar(f"healing {n} slices in context x {r}", n, progress) as bar:
        for d in range(int(depth.max(initial=-1)) + 1):
            rows = np.flatnonzero(depth == d)
            below = None
            if d > 0:
                below = healed[torch.from_numpy(below_of[rows])].reshape(-1, h, w)  # (b * R,)
            out = heal(
                prior,
                codes_t[rows],
                threshold,
                r,
                level=None if level_t is None else level_t[rows],
                below=below,
                uniforms=uniforms[rows].reshape(-1, h, w),
                threads=threads,
                **options.as_keywords(),
            )
            healed[rows] = out.codes.cpu().view(-1, r, h, w)
            resampled[rows] = out.resampled.cpu().view(-1, r, h, w)
            heal_nll[rows] = out.nll.cpu().view(-1, r, h, w)
            repeated = np.repeat(codes[rows], r, axis=0)  # (b * R, h, w)
            lv = None if levels is None else np.repeat(levels[rows], r)
            below_np = None if below is None else below.numpy()
            per_healing = code_nll_map(prior, repeated, lv, below=below_np)  # (b * R, h, w)
            nll[rows] = per_healing.reshape(-1, r, h, w).mean(axis=1)
            bar.advance(len(rows))
    healing = Healing(
        codes=healed.view(n * r, h, w),
        resampled=resampled.view(n * r, h, w),
        nll=heal_nll.view(n * r, h, w),
    )
    return healing, nll
