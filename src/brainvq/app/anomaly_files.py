"""Writing anomaly results to a folder (every file atomically, every name unique).

anomaly_maps.npz   maps (N, H, W) float32 (higher = more anomalous), masks (N, H, W) bool (the
                   map above the calibrated pixel threshold), names (N,) the input names; in
                   input order at the model's working size
scores.csv         name, level, score, flagged, level_from, output
<name>.png         per slice: the slice, its first healing, the map over the slice (red, the
                   mask outlined in yellow); named like the input (app.writers.output_names)
grid.png           the same for the most anomalous slices, one per row
summary.json       the calibration used, its guarantee, counts and notes
<volume>_anomaly.nii.gz   per NIfTI input volume: its maps as a stack (H, W, slices) whose
                   affine places them in the volume's world coordinates (see stack_affine)
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.app.anomaly import AnomalyResult
from brainvq.app.writers import GRID, VOLUME_SLICE, output_names
from brainvq.config import to_dict
from brainvq.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    output_folder,
)
from brainvq.io.images import save_png

MAPS_FILE = "anomaly_maps.npz"
SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
NIFTI_SUFFIX = "_anomaly.nii.gz"
GRID_ROWS = 8
PAD = 2
HEAT = np.array([255.0, 40.0, 0.0])  # the map's colour
OUTLINE = np.array([255, 255, 0], dtype=np.uint8)  # the mask's outline
HEAT_OPACITY = 0.75
ORIENTATION = (
    "RAS+: the volume reoriented by nibabel.as_closest_canonical, as brainvq slices it; array "
    "axis 0 = x (left -> right), axis 1 = y (posterior -> anterior), both resampled to the "
    "working size; axis 2 = the volume's slices from inferior to superior (their z voxels are "
    "listed); the affine maps the stack into the volume's world coordinates"
)


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


def stack_affine(volume: Path, z: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The affine of a map stack (size, size, n) made from the slices at z voxels `z` (n,) of
    `volume`, and how far (voxels) those z lie from the straight line the affine assumes.

    Follows brainvq.data.nifti: canonical RAS; the (x, y) plane resampled to square voxels when
    they are not, centred on a square canvas, resized to size x size (pixel centres map to pixel
    centres)."""
    img = nib.load(str(volume))
    if len(img.shape) == 4:
        img = img.slicer[..., 0]
    canon = nib.as_closest_canonical(img)
    nx, ny = canon.shape[:2]
    zx, zy = (float(v) for v in canon.header.get_zooms()[:2])
    if np.isclose(zx, zy, rtol=0.01):
        rx, ry = nx, ny
    else:
        step = min(zx, zy)
        rx, ry = round(nx * zx / step), round(ny * zy / step)
    side = max(rx, ry)
    top, left = (side - rx) // 2, (side - ry) // 2

    def axis(n_vox: int, n_res: int, pad: int) -> tuple[float, float]:
        scale = side / size * n_vox / n_res
        return scale, (0.5 * side / size - pad) * n_vox / n_res - 0.5

    (a_r, b_r), (a_c, b_c) = axis(nx, rx, top), axis(ny, ry, left)
    k = np.arange(len(z), dtype=np.float64)
    dz, z0 = np.polyfit(k, z, 1) if len(z) > 1 else (1.0, float(z[0]))
    if abs(dz) < 1e-6:  # every slice at one z: keep the affine invertible
        dz = 1.0
    error = float(np.abs(z0 + dz * k - z).max()) if len(z) > 1 else 0.0
    voxels = np.array(
        [[a_r, 0, 0, b_r], [0, a_c, 0, b_c], [0, 0, dz, z0], [0, 0, 0, 1]], dtype=np.float64
    )
    return canon.affine @ voxels, error


def _volume_path(root: Path, rel: str) -> Path:
    return root if root.is_file() else root / rel


def write_nifti_maps(result: AnomalyResult, out_dir: Path) -> tuple[list[Path], dict]:
    """One <volume>_anomaly.nii.gz per input volume. Returns (the files, what each holds)."""
    volumes: dict[str, list[int]] = {}
    for i, name in enumerate(result.names):
        rel, sep, _ = name.partition(VOLUME_SLICE)
        if sep:
            volumes.setdefault(rel, []).append(i)
    written, info = [], {}
    size = result.maps.shape[-1]
    for rel, rows in volumes.items():
        z = np.array([int(result.names[i].partition(VOLUME_SLICE)[2]) for i in rows])
        affine, error = stack_affine(_volume_path(result.root, rel), z, size)
        stem = Path(rel).name
        for suffix in (".nii.gz", ".nii"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        target = out_dir / (Path(rel).parent / f"{stem}{NIFTI_SUFFIX}")
        stack = np.ascontiguousarray(result.maps[rows].transpose(1, 2, 0))  # (H, W, n)
        image = nib.Nifti1Image(stack.astype(np.float32), affine)
        image.header["descrip"] = b"brainvq anomaly map, RAS, higher = more anomalous"
        image.header.set_xyzt_units("mm")
        written.append(atomic_write_bytes(target, gzip.compress(image.to_bytes(), mtime=0)))
        info[target.relative_to(out_dir).as_posix()] = {
            "volume": str(_volume_path(result.root, rel)),
            "orientation": ORIENTATION,
            "z_voxels": z.tolist(),
            "z_off_line_voxels": round(error, 3),
        }
    return written, info


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
    nifti, nifti_info = write_nifti_maps(result, out_dir)
    written += nifti
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
        "nifti": nifti_info,
        "notes": result.notes,
    }
    written.append(atomic_write_json(out_dir / SUMMARY_FILE, summary))
    return written
