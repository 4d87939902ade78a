"""How well a VQ-VAE reconstructs a split: SSIM, PSNR, MAE, MSE, code usage and rate.

The split is read from its SliceSet METRIC_BATCH slices at a time (brainvq.data.store.RowReader:
a memory-mapped store is never read whole), reconstructed, and its metrics and code counts
accumulated per batch; only the per-image SSIM (8 bytes a slice) and the few slices a figure
shows are kept. The batches are those the whole split would be cut into, so the numbers equal
the all-at-once computation's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader
from brainvq.evaluation.volume_reconstruction import evaluate_volumes
from brainvq.inference.codes import reconstruct, to_uint8
from brainvq.io.bundle import Bundle
from brainvq.metrics import ReconstructionMetrics, bits_per_pixel, perplexity

METRIC_BATCH = 128  # a multiple of inference.codes.BATCH: the model sees the same batches
N_SHOWN = 10  # slices whose reconstructions the figure shows


def spread_rows(subject: np.ndarray, level: np.ndarray, n: int) -> np.ndarray:
    """Indices of min(n, N) distinct slices evenly spaced in (level, subject) order, from the
    slices' subjects and levels (N,) alone."""
    order = np.lexsort((subject, level))  # by level, then subject
    picks = np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(np.int64)
    return order[picks]


def spread_over_levels(part: SliceSet, n: int) -> np.ndarray:
    """`spread_rows` of the slices of `part` (reads no image)."""
    return spread_rows(part.subject, part.level, n)


def evaluate_vqvae(
    bundle: Bundle,
    sliceset: SliceSet,
    split: str = "test",
    device: str = "cpu",
    n_shown: int = N_SHOWN,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the VQ-VAE on `split`, and what the figures need.

    Returns (metrics, arrays). metrics: split, n_images, ssim, ssim_min, psnr, mae, mse,
    perplexity, codes_used, codebook_size, bits_per_pixel (SSIM: 11x11 Gaussian window,
    sigma 1.5, data_range 1 on images in [0, 1]; PSNR in dB, mean over images).
    arrays: ssim (N,) float64 per image, counts (K,) int64 code counts, shown (S,) int64 the
    positions in the split of the S = min(n_shown, N) slices spread over the levels
    (`spread_over_levels`), originals and recons (S, H, W) uint8 of those slices.
    """
    rows = sliceset.split_rows(split)  # (N,) positions in the set
    shown = spread_rows(sliceset.subject[rows], sliceset.level[rows], n_shown)
    if bundle.config.dims == 3:  # whole volumes, scored on three planes
        return evaluate_volumes(bundle, sliceset, split, shown, device)
    size = bundle.config.image_size
    if sliceset.size != size:
        raise ValueError(
            f"the model works at {size}x{size} but the slices of {sliceset.source} are "
            f"{sliceset.size}x{sliceset.size}; load them with --size {size}"
        )
    reader = RowReader(sliceset.images)
    K = bundle.config.codebook_size
    counts = np.zeros(K, dtype=np.int64)
    acc = ReconstructionMetrics()
    originals = np.zeros((len(shown), size, size), dtype=np.uint8)
    recons = np.zeros_like(originals)
    h = w = bundle.config.latent_size
    for start in range(0, len(rows), METRIC_BATCH):
        images = reader.read(rows[start : start + METRIC_BATCH])  # (b, H, W) uint8
        y, codes = reconstruct(bundle.model, images, device=device)  # (b, H, W), (b, h, w)
        x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)  # (b, 1, H, W)
        acc.update(x, torch.from_numpy(y).unsqueeze(1))
        counts += np.bincount(codes.ravel(), minlength=K)[:K]
        here = (shown >= start) & (shown < start + len(images))
        originals[here] = images[shown[here] - start]
        recons[here] = to_uint8(y[shown[here] - start])
    rec = acc.compute()
    metrics = {
        "split": split,
        "n_images": int(rec["n_images"]),
        "ssim": float(rec["ssim"]),
        "ssim_min": float(rec["ssim_min"]),
        "psnr": float(rec["psnr"]),
        "mae": float(rec["mae"]),
        "mse": float(rec["mse"]),
        "perplexity": float(perplexity(counts)),
        "codes_used": int((counts > 0).sum()),
        "codebook_size": int(K),
        "bits_per_pixel": float(bits_per_pixel((h, w), K, (size, size))),
        "entropy_bits_per_code": float(math.log2(perplexity(counts))),
    }
    arrays = {
        "ssim": np.asarray(rec["ssim_per_image"]),
        "counts": counts,
        "shown": shown,
        "originals": originals,
        "recons": recons,
    }
    return metrics, arrays
