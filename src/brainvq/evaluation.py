"""Evaluation of a trained run: reconstruction quality and code usage (metrics.json `vqvae`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainvq.atomic import atomic_write_json
from brainvq.bundle import Bundle
from brainvq.data.sliceset import SliceSet
from brainvq.metrics import ReconstructionMetrics, bits_per_pixel, code_histogram, perplexity

METRICS_FILE = "metrics.json"


@torch.inference_mode()
def reconstruct(
    bundle: Bundle, images: np.ndarray, batch_size: int = 64, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct uint8 images (N, H, W): returns (x_hat (N, H, W) float in [0, 1],
    code maps (N, h, w) int64). Never changes the model."""
    model = bundle.model.to(device).eval()
    recons, codes = [], []
    for start in range(0, len(images), batch_size):
        x = (
            torch.from_numpy(images[start : start + batch_size])
            .to(device)
            .float()
            .div(255)
            .unsqueeze(1)
        )
        idx = model.encode(x)  # (b, h, w)
        x_hat = model.decode_indices(idx).float().clamp(0, 1)  # (b, 1, H, W)
        recons.append(x_hat[:, 0].cpu().numpy())
        codes.append(idx.cpu().numpy())
    return np.concatenate(recons), np.concatenate(codes)


def evaluate_vqvae(
    bundle: Bundle, sliceset: SliceSet, split: str = "test", device: str | torch.device = "cpu"
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
    recons, codes = reconstruct(bundle, part.images, device=device)
    originals = part.images.astype(np.float32) / 255.0
    acc = ReconstructionMetrics()
    for start in range(0, len(originals), 128):
        x = torch.from_numpy(originals[start : start + 128]).unsqueeze(1)
        y = torch.from_numpy(recons[start : start + 128]).unsqueeze(1)
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


def update_metrics(run_dir: Path, key: str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` under `key` into RUN/metrics.json (atomic); returns the whole document."""
    path = Path(run_dir) / METRICS_FILE
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc[key] = {**doc.get(key, {}), **values}
    atomic_write_json(path, doc)
    return doc
