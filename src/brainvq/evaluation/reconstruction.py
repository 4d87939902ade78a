"""How well a VQ-VAE reconstructs a split: SSIM, PSNR, MAE, MSE, code usage and rate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brainvq.data.sliceset import SliceSet
from brainvq.inference.codes import reconstruct
from brainvq.io.bundle import Bundle
from brainvq.metrics import ReconstructionMetrics, bits_per_pixel, code_histogram, perplexity

METRIC_BATCH = 128


def evaluate_vqvae(
    bundle: Bundle, sliceset: SliceSet, split: str = "test", device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the VQ-VAE on `split`, and the arrays behind them for the figures.

    Returns (metrics, arrays). metrics: split, n_images, ssim, ssim_min, psnr, mae, mse,
    perplexity, codes_used, codebook_size, bits_per_pixel (SSIM: 11x11 Gaussian window,
    sigma 1.5, data_range 1 on images in [0, 1]; PSNR in dB, mean over images).
    arrays: originals (N, H, W) float, recons (N, H, W) float, ssim (N,), counts (K,),
    codes (N, h, w).
    """
    part = sliceset.require_split(split)
    size = bundle.config.image_size
    if part.size != size:
        raise ValueError(
            f"the model works at {size}x{size} but the slices of {sliceset.source} are "
            f"{part.size}x{part.size}; load them with --size {size}"
        )
    recons, codes = reconstruct(bundle.model, part.images, device=device)
    originals = part.images.astype(np.float32) / 255.0
    acc = ReconstructionMetrics()
    for start in range(0, len(originals), METRIC_BATCH):
        x = torch.from_numpy(originals[start : start + METRIC_BATCH]).unsqueeze(1)
        y = torch.from_numpy(recons[start : start + METRIC_BATCH]).unsqueeze(1)
        acc.update(x, y)
    rec = acc.compute()
    K = bundle.config.codebook_size
    counts = code_histogram(torch.from_numpy(codes), K)
    h, w = codes.shape[1:]
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
        "bits_per_pixel": float(bits_per_pixel((h, w), K, (part.size, part.size))),
        "entropy_bits_per_code": float(math.log2(perplexity(counts))),
    }
    arrays = {
        "originals": originals,
        "recons": recons,
        "ssim": np.asarray(rec["ssim_per_image"]),
        "counts": np.asarray(counts),
        "codes": codes,
    }
    return metrics, arrays
