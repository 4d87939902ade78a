"""Writing anomaly results to a folder (every file atomically, every name unique).

anomaly_maps.npz   maps (N, H, W) float32 (higher = more anomalous), masks (N, H, W) bool (the
                   map above the calibrated pixel threshold), names (N,) the input names; in
                   input order at the model's working size
scores.csv         name, level, score, p_value, flagged, scan, level_from, output: the slice
                   score (summary.json names it), its conformal p-value, flagged (p <= alpha),
                   the scan the slice belongs to
<name>.png         per slice: the slice, its first healing, the map over the slice (red, the
                   mask outlined in yellow), the slice's decision in a bar under it (red:
                   flagged), named like the input (app.writers.output_names)
grid.png           the same for the most anomalous slices (smallest p-values), one per row
summary.json       the calibration used (and where it is stored), the guarantees of pixels,
                   slices and scans, counts, per scan its decision, what differs from the
                   calibration and whether it applies (the shift check), levels, the share of
                   a volume's brain judged (`coverage`: brain_voxels, judged_voxels, share,
                   run_levels_mm; brainvq.app.anomaly.coverage), notes
calibration/<key>.npz  only when this call made a calibration that the user's cache could not
                   keep: the stored calibration, to copy into RUN/anomaly/calibrations/
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

from brainvq.app.anomaly import calibration_store
from brainvq.app.anomaly.find import AnomalyResult
from brainvq.app.volume_files import write_volume_outputs
from brainvq.app.writers import GRID, output_names
from brainvq.atomic import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    output_folder,
)
from brainvq.config import to_dict
from brainvq.io.images import save_png

MAPS_FILE = "anomaly_maps.npz"
SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
GRID_ROWS = 8
PAD = 2
HEAT = np.array([255.0, 40.0, 0.0])  # the map's colour
OUTLINE = np.array([255, 255, 0], dtype=np.uint8)  # the mask's outline
HEAT_OPACITY = 0.75
BAR = 3  # pixels: the decision bar under a slice's triptych
FLAGGED_BAR = np.array([220, 30, 30], dtype=np.uint8)
CLEAR_BAR = np.array([40, 160, 60], dtype=np.uint8)
CALIBRATION_FOLDER = "calibration"


def overlay(image: np.ndarray, amap: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """The map over the slice: image (H, W) uint8, amap (H, W) float, mask (H, W) bool ->
    (H, W, 3) uint8. Red grows with the map up to twice the threshold; the mask is outlined."""
    base = np.repeat(image[:, :, None].astype(np.float64), 3, axis=2)  # (H, W, 3)
    a = HEAT_OPACITY * np.clip(amap / (2 * max(threshold, 1e-6)), 0, 1)[:, :, None]
    rgb = (base * (1 - a) + HEAT * a).round().astype(np.uint8)
    rgb[mask & ~ndimage.binary_erosion(mask)] = OUTLINE
    return rgb


def triptych(
    image: np.ndarray,
    healed: np.ndarray,
    amap: np.ndarray,
    mask: np.ndarray,
    threshold: float,
    flagged: bool,
) -> np.ndarray:
    """(H + BAR, 3 W + 2 PAD, 3) uint8: the slice, its healed version, the overlay, and under
    them a bar of the slice decision (red: flagged, green: not)."""
    h, w = image.shape
    out = np.zeros((h + BAR, 3 * w + 2 * PAD, 3), dtype=np.uint8)
    out[:h, :w] = image[:, :, None]
    out[:h, w + PAD : 2 * w + PAD] = healed[:, :, None]
    out[:h, 2 * (w + PAD) :] = overlay(image, amap, mask, threshold)
    out[h:] = FLAGGED_BAR if flagged else CLEAR_BAR
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
        answer = result.scans[i]
        info["scan_flagged"] = answer.flagged
        info["scan_p_value"] = answer.p
        info["slices_flagged"] = answer.n_flagged
        info["calibration_applies"] = not answer.warn
        info["resolution"] = answer.resolution
        info["shift_check"] = answer.shift
        info["coverage"] = answer.coverage.to_dict()
        info["summary"] = answer.line()
        infos.append(info)
    return written, infos


def _scores_csv(result: AnomalyResult, outputs: list[str]) -> str:
    scan_of = [""] * len(result.names)
    for answer in result.scans:
        for i in answer.rows:
            scan_of[i] = answer.name
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["name", "level", "score", "p_value", "flagged", "scan", "level_from", "output"]
    )
    for i, name in enumerate(result.names):
        writer.writerow(
            [
                name,
                int(result.levels[i]),
                f"{result.scores[i]:.6g}",
                f"{result.p_values[i]:.6g}",
                int(result.flagged[i]),
                scan_of[i],
                result.level_from[i],
                outputs[i],
            ]
        )
    return buffer.getvalue()


def _guarantee(cal) -> dict:
    n = cal.n_slices
    return {
        "pixels": (
            f"for a healthy slice exchangeable with the {n} calibration slices, on average at "
            f"most {cal.alpha} of its brain pixels are in the mask"
        ),
        "slices": (
            f"such a slice is flagged (its {cal.slice_score} score's conformal p-value <= "
            f"{cal.alpha}) with probability at most {cal.alpha}"
        ),
        "scans": (
            f"a healthy scan of such slices is flagged (Simes' combination of its slices' "
            f"p-values <= {cal.scan_alpha}) with probability at most {cal.scan_alpha}, when "
            "its slices' p-values are independent or positively dependent (PRDS)"
        ),
    }


def _keep_calibration(result: AnomalyResult, out_dir: Path) -> Path | None:
    """The calibration this call made and could not keep in the cache, into the output folder."""
    if not result.unsaved:
        return None
    path = out_dir / CALIBRATION_FOLDER / f"{result.stored.key.name}{calibration_store.SUFFIX}"
    calibration_store.save(result.stored, path)
    result.notes.append(
        f"the calibration this call made is in {path}: copy it to RUN/anomaly/calibrations/ "
        "(or run `brainvq anomaly calibrate --run RUN`) to reuse it"
    )
    return path


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
            result.images[i],
            first_healing[i],
            result.maps[i],
            result.masks[i],
            cal.pixel_threshold,
            bool(result.flagged[i]),
        )
        written.append(save_png(out_dir / name, row))
        rows.append(row)
    top = np.lexsort((-result.scores, result.p_values))[:GRID_ROWS]
    h, w = rows[0].shape[:2]
    grid = np.zeros((len(top) * (h + PAD) + PAD, w + 2 * PAD, 3), dtype=np.uint8)
    for r, i in enumerate(top):
        grid[PAD + r * (h + PAD) : PAD + r * (h + PAD) + h, PAD : PAD + w] = rows[i]
    written.append(save_png(out_dir / GRID, grid))
    volumes, volume_info = write_volumes(result, out_dir)
    written += volumes
    kept = _keep_calibration(result, out_dir)
    written += [kept] if kept else []
    stored = result.stored
    summary = {
        "n_slices": len(result.names),
        "n_flagged": int(result.flagged.sum()),
        "n_scans": len(result.scans),
        "n_scans_flagged": sum(a.flagged for a in result.scans),
        "flagged_brain_pixel_share": float(result.masks[result.details.foreground].mean())
        if result.details.foreground.any()
        else 0.0,
        "guarantee": _guarantee(cal),
        "calibration": to_dict(cal),
        "calibration_stored_in": str(kept or stored.path or ""),
        "grid": [outputs[i] for i in top],
        "scans": [
            {
                "name": a.name,
                "slices": len(a.rows),
                "slices_flagged": a.n_flagged,
                "p_value": a.p,
                "flagged": a.flagged,
                "flagged_brain_share": a.flagged_brain_share,
                "slices_needed": a.slices_needed,
                "calibration_applies": not a.warn,
                "coverage": a.coverage.to_dict() if a.coverage else None,
                "summary": a.line(),
            }
            for a in result.scans
        ],
        "volumes": volume_info,
        "notes": result.notes,
    }
    written.append(atomic_write_json(out_dir / SUMMARY_FILE, summary))
    return written
