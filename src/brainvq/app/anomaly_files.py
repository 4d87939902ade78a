"""Writing anomaly results to a folder (every file atomically, every name unique).

anomaly_maps.npz   maps (N, H, W) float32 (higher = more anomalous), masks (N, H, W) bool (the
                   map above the calibrated pixel threshold), names (N,) the input names; in
                   input order at the model's working size
scores.csv         name, level, score, flagged, level_from, output
<name>.png         per slice: the slice, its first healing, the map over the slice (red, the
                   mask outlined in yellow); named like the input (app.writers.output_names)
grid.png           the same for the most anomalous slices, one per row
summary.json       the calibration used, its guarantee (and, per volume, whether it applies:
                   the shift check), counts, levels covered and not, notes
per NIfTI input volume, in its own space (brainvq.app.volume_files), NaN where not covered:
<scan>_anomaly.nii.gz, <scan>_anomaly_mask.nii.gz (1: above the pixel threshold),
<scan>_brain_mask.nii.gz, <scan>_reconstruction.nii.gz and <scan>_healed.nii.gz (the scan's
intensity units); aligned/ (the same on the run's frame), the transform, the registration check
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainvq.app.anomaly import AnomalyResult
from brainvq.app.volume_files import write_volume_outputs
from brainvq.app.writers import GRID, output_names
from brainvq.config import to_dict
from brainvq.io.atomic import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    output_folder,
)
from brainvq.io.images import save_png

MAPS_FILE = "anomaly_maps.npz"
SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
GRID_ROWS = 8
PAD = 2
HEAT = np.array([255.0, 40.0, 0.0])  # the map's colour
OUTLINE = np.array([255, 255, 0], dtype=np.uint8)  # the mask's outline
HEAT_OPACITY = 0.75


def overlay(image: np.ndarray, amap: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The map over the slice: image (H, W) uint8, amap (H, W) float, mask (H, W) bool ->
    (H, W, 3) uint8. Red grows with the map up to twice the threshold; the mask is outlined."""
    base = np.repeat(image[:, :, None].astype(np.float64), 3, axis=2)  # (H, W, 3)
    a = HEAT_OPACITY * np.clip(amap / (2 * max(threshold, 1e-6)), 0, 1)[:, :, None]
    rgb = (base * (1 - a) + HEAT * a).round().astype(np.uint8)
    rgb[mask & ~ndimage.binary_erosion(mask)] = OUTLINE
    return rgb


def triptych(
    image: np.ndarray, healed: np.ndarray, amap: np.ndarray, mask: np.ndarray, threshold: float
) -> np.ndarray:
    """(H, 3 W + 2 PAD, 3) uint8: the slice, its healed version, the overlay."""
    h, w = image.shape
    out = np.zeros((h, 3 * w + 2 * PAD, 3), dtype=np.uint8)
    out[:, :w] = image[:, :, None]
    out[:, w + PAD : 2 * w + PAD] = healed[:, :, None]
    out[:, 2 * (w + PAD) :] = overlay(image, amap, mask, threshold)
    return out


def write_volumes(result: AnomalyResult, out_dir: Path) -> tuple[list[Path], list[dict]]:
    """Each input volume's answers in its own space (module docstring). Returns (the files,
    one summary per volume)."""
    written, infos = [], []
    cal = result.calibration
    for i, aligned in enumerate(result.volumes):
        rows = result.volume_rows(i)
        maps = result.maps[rows]
        scan_map = aligned.to_scan(maps)
        mask = (scan_map > cal.pixel_threshold) & aligned.mask
        healed = aligned.to_scan_units(result.details.healed[rows, 0])
        recon = aligned.to_scan_units(result.reconstructions[rows])
        nan = np.isnan(scan_map)
        scan_space = {
            "anomaly": (scan_map, "brainvq anomaly map, higher = more anomalous"),
            "anomaly_mask": (mask.astype(np.uint8), f"brainvq anomaly mask, alpha {cal.alpha}"),
            "brain_mask": (aligned.mask.astype(np.uint8), f"brain mask ({aligned.mask_kind})"),
            "reconstruction": (
                np.where(nan, np.nan, aligned.to_scan(recon)),
                "brainvq VQ-VAE reconstruction",
            ),
            "healed": (np.where(nan, np.nan, aligned.to_scan(healed)), "brainvq healed"),
        }
        on_frame = {
            "scan": (aligned.images.astype(np.float32) / 255, "scan on the frame, standardised"),
            "anomaly": (maps, "brainvq anomaly map on the frame"),
        }
        files, info = write_volume_outputs(out_dir, aligned, scan_space, on_frame)
        written += files
        info["flagged_brain_voxel_share"] = (
            float(mask[aligned.mask & ~nan].mean()) if (aligned.mask & ~nan).any() else 0.0
        )
        info["calibration_applies"] = not result.shift[i]["warn"]
        info["shift_check"] = result.shift[i]
        infos.append(info)
    return written, infos


def _scores_csv(result: AnomalyResult, outputs: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "level", "score", "flagged", "level_from", "output"])
    for i, name in enumerate(result.names):
        writer.writerow(
            [
                name,
                int(result.levels[i]),
                f"{result.scores[i]:.6g}",
                int(result.flagged[i]),
                result.level_from[i],
                outputs[i],
            ]
        )
    return buffer.getvalue()


def write_anomalies(result: AnomalyResult, out_dir: str | Path) -> list[Path]:
    """Write every file of the module docstring under out_dir. Returns them."""
    out_dir = output_folder(out_dir)
    cal = result.calibration
    outputs = output_names(result.names, [int(k) for k in result.levels])
    with atomic_path(out_dir / MAPS_FILE) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f, maps=result.maps, masks=result.masks, names=np.array(result.names, dtype=str)
        )
    written = [out_dir / MAPS_FILE]
    written.append(atomic_write_text(out_dir / SCORES_FILE, _scores_csv(result, outputs)))
    first_healing = result.details.healed[:, 0]  # (N, H, W)
    rows = []
    for i, name in enumerate(outputs):
        row = triptych(
            result.images[i], first_healing[i], result.maps[i], result.masks[i], cal.pixel_threshold
        )
        written.append(save_png(out_dir / name, row))
        rows.append(row)
    top = np.argsort(-result.scores, kind="stable")[:GRID_ROWS]
    h, w = rows[0].shape[:2]
    grid = np.zeros((len(top) * (h + PAD) + PAD, w + 2 * PAD, 3), dtype=np.uint8)
    for r, i in enumerate(top):
        grid[PAD + r * (h + PAD) : PAD + r * (h + PAD) + h, PAD : PAD + w] = rows[i]
    written.append(save_png(out_dir / GRID, grid))
    volumes, volume_info = write_volumes(result, out_dir)
    written += volumes
    summary = {
        "n_slices": len(result.names),
        "n_flagged": int(result.flagged.sum()),
        "flagged_brain_pixel_share": float(result.masks[result.details.foreground].mean())
        if result.details.foreground.any()
        else 0.0,
        "guarantee": (
            f"for a healthy slice exchangeable with the {cal.n_slices} calibration slices: on "
            f"average at most {cal.alpha} of its brain pixels are in the mask, and it is flagged "
            f"with probability at most {cal.alpha}"
        ),
        "calibration": to_dict(cal),
        "grid": [outputs[i] for i in top],
        "volumes": volume_info,
        "notes": result.notes,
    }
    written.append(atomic_write_json(out_dir / SUMMARY_FILE, summary))
    return written
