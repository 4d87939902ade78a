"""How well a VQ-VAE reconstructs a split's volumes: SSIM, PSNR, MAE on all three planes.

Each subject of the split is read as its volume (brainvq.data.subject_volumes), coded and
decoded (whole by a 3D model, slice by slice by a 2D one, so the two compare plane by plane),
and scored slice by slice in the axial, coronal and sagittal planes
(brainvq.data.planes) with the same per-image metrics as the 2D evaluation
(brainvq.metrics.ReconstructionMetrics). The top-level ssim/psnr/mae/mse are the axial ones, so
a 3D run's metrics.json compares with a 2D run's key for key; `planes` holds all three. The
rate is `bits_per_voxel`: D' h w log2(K) / (D H W), the same number as bits per pixel of an
axial slice (`bits_per_pixel` carries it too, for what reads that key). One volume is in
memory at a time, with the few axial slices and the REPORT_VOLUMES volumes a figure shows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brainvq.data.planes import PLANES, plane_slices
from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader
from brainvq.data.subject_volumes import subject_volumes
from brainvq.inference.codes import to_uint8
from brainvq.io.bundle import Bundle
from brainvq.metrics import ReconstructionMetrics, perplexity
from brainvq.models.eval_mode import eval_mode

REPORT_VOLUMES = 2  # the split's first volumes kept whole, with their reconstructions


def bits_per_voxel(
    latent: tuple[int, int, int], codebook_size: int, volume: tuple[int, int, int]
) -> float:
    """Size of a code volume in bits per voxel: d * h * w * log2(K) / (D * H * W).

    16x32x32 codes from a 512-code book for a 32x128x128 volume: 16384 * 9 / 524288 = 0.28125.
    """
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
    return math.prod(latent) * math.log2(codebook_size) / math.prod(volume)


def evaluate_volumes(
    bundle: Bundle,
    sliceset: SliceSet,
    split: str,
    shown: np.ndarray,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the VQ-VAE (3D, or 2D slice by slice) on the volumes of `split`, and what the
    figures need; `shown` (S,) the positions in the split of the axial slices a figure shows.

    Returns (metrics, arrays) as brainvq.evaluation.reconstruction.evaluate_vqvae does, with
    n_images the axial slices, plus metrics n_volumes, bits_per_voxel and planes ({plane:
    {ssim, ssim_min, psnr, mae, mse, n_images}}). arrays: ssim (N,) per axial slice in the
    split's order, counts (K,), shown (S,) positions in the split of the axial
    slices shown, originals and recons (S, H, W) uint8 of those slices, and the first
    REPORT_VOLUMES volumes whole: volume_subjects (V,) str, volume_originals and volume_recons
    (V, D, H, W) uint8.
    """
    config = bundle.config
    size = config.image_size
    if sliceset.size != size:
        raise ValueError(
            f"the model works at {size}x{size} but the slices of {sliceset.source} are "
            f"{sliceset.size}x{sliceset.size}; load them with --size {size}"
        )
    rows = sliceset.split_rows(split)
    volumes = subject_volumes(sliceset, split, config.level_stride)
    position = np.full(len(sliceset), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))  # set row -> position in the split
    K = config.codebook_size
    counts = np.zeros(K, dtype=np.int64)
    scores = {plane: ReconstructionMetrics() for plane in PLANES}
    originals = np.zeros((len(shown), size, size), dtype=np.uint8)
    recons = np.zeros_like(originals)
    reader = RowReader(sliceset.images)
    kept = min(REPORT_VOLUMES, len(volumes))
    volume_originals = np.zeros((kept, volumes.depth, size, size), dtype=np.uint8)
    volume_recons = np.zeros_like(volume_originals)
    model = bundle.model.to(device)
    with eval_mode(model), torch.inference_mode():
        for v, volume_rows in enumerate(volumes.rows):
            images = reader.read(volume_rows)  # (D, H, W) uint8
            x = torch.from_numpy(images).to(device).float().div_(255.0)[None, None]
            if config.dims == 3:
                codes = model.encode(x)  # (1, D', h, w)
                y = model.decode_indices(codes)[0, 0]  # (D, H, W)
            else:
                codes = model.encode(x[0].transpose(0, 1))  # slices (D, 1, H, W) -> (D, h, w)
                y = model.decode_indices(codes)[:, 0]  # (D, H, W)
            y = y.float().clamp(0, 1).cpu().numpy()
            counts += np.bincount(codes.cpu().numpy().ravel(), minlength=K)[:K]
            original = images.astype(np.float32) / 255.0
            if v < kept:
                volume_originals[v], volume_recons[v] = images, to_uint8(y)
            for plane in PLANES:
                a = torch.from_numpy(np.ascontiguousarray(plane_slices(original, plane)))
                b = torch.from_numpy(np.ascontiguousarray(plane_slices(y, plane)))
                scores[plane].update(a.unsqueeze(1), b.unsqueeze(1))
            at = position[volume_rows]  # (D,) positions in the split
            here = np.isin(shown, at)
            for i in np.flatnonzero(here):
                k = int(np.flatnonzero(at == shown[i])[0])
                originals[i], recons[i] = images[k], to_uint8(y[k])
    planes = {plane: scores[plane].compute() for plane in PLANES}
    axial = planes["axial"]
    depth, latent = volumes.depth, config.latent_size
    rate = bits_per_voxel((depth // config.level_stride, latent, latent), K, (depth, size, size))
    metrics = {
        "split": split,
        "n_images": int(axial["n_images"]),
        "n_volumes": len(volumes),
        "ssim": float(axial["ssim"]),
        "ssim_min": float(axial["ssim_min"]),
        "psnr": float(axial["psnr"]),
        "mae": float(axial["mae"]),
        "mse": float(axial["mse"]),
        "perplexity": float(perplexity(counts)),
        "codes_used": int((counts > 0).sum()),
        "codebook_size": int(K),
        "bits_per_pixel": rate,
        "bits_per_voxel": rate,
        "entropy_bits_per_code": float(math.log2(perplexity(counts))),
        "planes": {
            plane: {
                key: float(value) if key != "n_images" else int(value)
                for key, value in planes[plane].items()
                if key != "ssim_per_image"
            }
            for plane in PLANES
        },
    }
    per_slice = np.zeros(len(rows))
    per_slice[position[volumes.rows.ravel()]] = axial["ssim_per_image"]  # split order
    arrays = {
        "ssim": per_slice,
        "counts": counts,
        "shown": shown,
        "originals": originals,
        "recons": recons,
        "volume_subjects": np.asarray(volumes.subject[:kept], dtype=str),
        "volume_originals": volume_originals,
        "volume_recons": volume_recons,
    }
    return metrics, arrays
