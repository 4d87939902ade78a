"""Scans as users have them: healthy false positives, lesions, before and after, time per volume.

Synthetic scans with the truth known (brainvq.evaluation.synthetic_scans): the MNI152 template
with and without a skull, under the demo cohort's kind of smooth deformation, through random
acquisitions (orientation codes, 1 / 0.9 / 5 mm voxels, crops and padding, rotations up to 15
degrees, shifts, 10% scaling, contrast curves, bias fields, noise); half of them with 1-3 planted
3D lesions (ellipsoids, irregular blobs, rings, clusters; 3-15 mm radius; hypo- or hyperintense)
in the run's band of levels. With the run's own calibration (its validate split) at --alpha:

- after (brainvq's scan path, brainvq.data.space.align): each scan registered to MNI152, sliced on
  the run's frame, its intensities standardised (landmarks, or white-matter-peak scaling to
  compare), scored, and the map carried back to the scan's voxels. Measured over the scan's
  true brain voxels in the covered levels: the share flagged on healthy scans (mean over scans
  +- its standard error), the scans warned by the shift check (its calibration does not apply:
  healthy scans should rarely be, and --shifted healthy scans that really flag too much, an
  inverted contrast or heavy noise, should be), the scans flagged by the scan decision (Simes
  at --alpha: healthy scans at most alpha, lesioned ones as often as possible, also counted
  among those whose lesions fill >= 1.5% of the brain in some frame slice), and on lesioned
  scans the voxel AUPRC, the Dice at the calibrated threshold and the best Dice; the
  registration error (mm over brain voxels, deformation included) and seconds per volume
  (registration, alignment, healing, the shift check and the scan-space maps). --lines prints
  each scan's line (its decision, what differs from the calibration, whether it applies);
- before (the NIfTI path brainvq had before, reimplemented here as it was: 32 slices spread
  evenly over the slices with foreground, 0.5/99.5-percentile scaling, the brain padded into the
  frame wherever it lies, no registration): the same measures on its own slice stack.

    .venv/bin/python benchmarks/bench_scans.py --run runs/demo [--healthy 12 --lesioned 12]
        [--heads: raw research heads (skull, neck, noise, any origin, atrophy) instead]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from brainvq.app.anomaly.calibration import anomaly_settings, resolve_calibration
from brainvq.app.anomaly.find import find_anomalies
from brainvq.data.imaging import pad_to_square, resize_square
from brainvq.data.space.resample import scan_to_frame
from brainvq.data.space.template import load_reference
from brainvq.evaluation.anomaly_benchmark import average_precision, best_dice, dice
from brainvq.evaluation.synthetic_anatomy import random_lesions
from brainvq.evaluation.synthetic_scans import (
    make_scan,
    random_acquisition,
    random_head_acquisition,
)
from brainvq.hardware import machine
from brainvq.inference.anomaly_maps import anomaly_maps
from brainvq.inference.run_models import load_run_models
from brainvq.run import load_run


def old_slices(image: nib.Nifti1Image, volumes: list[np.ndarray], size: int, n: int = 32):
    """The NIfTI path before this work, as it was: canonical RAS, the n axial slices evenly spaced
    over those whose foreground (above 10% of the way from the minimum to the 99th percentile)
    is at least 5% of the largest, each volume scaled by the 0.5/99.5 percentiles of the
    foreground, padded to a square, resized. Returns the first volume's slices (n, S, S) uint8
    and every other volume (masks) sliced alike, (n, S, S) bool."""
    canon = nib.as_closest_canonical(image)
    flip = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(image.affine), nib.orientations.io_orientation(canon.affine)
    )
    data = np.asarray(canon.dataobj, dtype=np.float32)
    lo, hi = float(data.min()), float(np.percentile(data, 99))
    foreground = data > lo + 0.1 * (hi - lo)
    area = foreground.sum(axis=(0, 1))
    with_brain = np.nonzero(area >= 0.05 * area.max())[0]
    z = np.round(np.linspace(with_brain[0], with_brain[-1], n)).astype(int)
    a, b = np.percentile(data[foreground], (0.5, 99.5))
    scaled = np.clip((data - a) / max(b - a, 1e-6), 0, 1)
    zx, zy = (float(v) for v in canon.header.get_zooms()[:2])

    def cut(volume: np.ndarray, k: int) -> np.ndarray:
        pixels = np.round(volume[:, :, k] * 255).astype(np.uint8)
        if not np.isclose(zx, zy, rtol=0.01):
            step = min(zx, zy)
            shape = (round(pixels.shape[1] * zy / step), round(pixels.shape[0] * zx / step))
            pixels = np.asarray(Image.fromarray(pixels).resize(shape, Image.BILINEAR))
        return resize_square(pad_to_square(pixels), size)

    images = np.stack([cut(scaled, k) for k in z])
    others = []
    for volume in volumes:
        canon_v = nib.orientations.apply_orientation(volume.astype(np.float32), flip)
        others.append(np.stack([cut(canon_v, k) for k in z]) >= 128)
    return images, others


HEAVY_NOISE = 0.25  # Rician noise as a share of white matter (random_acquisition: 0.01-0.04)
LARGE_LESION = 0.015  # a lesion filling this share of a frame slice's brain


def large_lesion(scan, aligned) -> bool:
    """Whether the scan's true lesion fills >= LARGE_LESION of the brain of some frame slice."""
    lesion, _ = scan_to_frame(
        scan.lesion.astype(np.float32),
        scan.image.affine,
        aligned.registration.to_scan,
        aligned.frame,
        aligned.size,
        aligned.levels,
        antialias=False,
    )
    brain = aligned.brain.reshape(len(aligned.levels), -1)
    filled = ((lesion >= 0.5) & aligned.brain).reshape(len(aligned.levels), -1).sum(axis=1)
    return bool((filled / np.maximum(brain.sum(axis=1), 1) >= LARGE_LESION).any())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--healthy", type=int, default=12)
    p.add_argument("--lesioned", type=int, default=12)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intensity", nargs="+", default=["landmarks", "white_matter_peak"])
    p.add_argument("--skip-before", action="store_true")
    p.add_argument(
        "--shifted",
        type=int,
        default=0,
        help="healthy scans that really flag too much, of each kind (inverted contrast, heavy "
        "noise), for the shift check",
    )
    p.add_argument("--lines", action="store_true", help="print each scan's line")
    p.add_argument(
        "--heads",
        action="store_true",
        help="raw research heads instead of tidy scans (skull, neck and shoulders, a noisy "
        "background, 1 or 2 mm, the origin anywhere, half of them atrophied: "
        "synthetic_scans.random_head_acquisition)",
    )
    args = p.parse_args()
    print(machine().describe())
    config = load_run(args.run)
    models = load_run_models(args.run)
    size = config.data.size
    settings = anomaly_settings(config)
    resolved = resolve_calibration(args.run, args.alpha, settings, models)
    calibration = resolved.calibration
    print(*resolved.notes, f"calibration: {calibration.source}, {calibration.n_slices} slices")
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, list]] = {}

    def record(method: str, key: str, value) -> None:
        results.setdefault(method, {}).setdefault(key, []).append(value)

    reference = load_reference()
    points = reference.affine[:3, :3] @ np.argwhere(reference.mask)[::97].T
    points = points + reference.affine[:3, 3:4]  # (3, N) template brain, MNI mm
    kinds = ["healthy"] * args.healthy + ["lesioned"] * args.lesioned
    kinds += ["inverted", "noisy"] * args.shifted
    with tempfile.TemporaryDirectory() as tmp:
        for i, kind in enumerate(kinds):
            sick = kind == "lesioned"
            fixed = {"inverted": {"invert": True}, "noisy": {"noise": HEAVY_NOISE}}.get(kind, {})
            draw = random_head_acquisition if args.heads else random_acquisition
            acquisition = draw(rng, **fixed)
            lesions = random_lesions(rng, int(rng.integers(1, 4))) if sick else []
            scan = make_scan(acquisition, lesions, seed=args.seed * 1000 + i)
            path = Path(tmp) / f"scan{i}.nii.gz"
            nib.save(scan.image, str(path))
            for method in args.intensity:
                start = time.perf_counter()
                result = find_anomalies(
                    args.run, path, alpha=args.alpha, intensity=method, progress=False
                )
                aligned = result.volumes[0]
                in_scan = aligned.to_scan(result.maps)
                seconds = time.perf_counter() - start
                covered = np.isfinite(in_scan) & scan.brain
                flagged = (in_scan > calibration.pixel_threshold) & aligned.mask
                name = f"after ({method})"
                record(name, "seconds", seconds)
                answer = result.scans[0]
                record(name, f"warned {kind}", answer.warn)
                record(name, f"flagged {kind}", answer.flagged)
                if args.lines:
                    print(f"  {kind} ({method}) {answer.line()}", flush=True)
                if kind not in ("healthy", "lesioned"):
                    continue
                if sick and large_lesion(scan, aligned):
                    record(name, "flagged large", answer.flagged)
                if sick:
                    record(name, "scores", in_scan[covered])
                    record(name, "labels", scan.lesion[covered])
                    record(name, "dice", dice(flagged[covered], scan.lesion[covered]))
                else:
                    record(name, "healthy share", float(flagged[covered].mean()))
                found = aligned.registration.to_scan
                error = found[:3, :3] @ points + found[:3, 3:4] - scan.true_scan_points(points)
                record(name, "registration", float(np.linalg.norm(error, axis=0).mean()))
            if not args.skip_before and kind in ("healthy", "lesioned"):
                images, (lesion, brain) = old_slices(scan.image, [scan.lesion, scan.brain], size)
                maps = anomaly_maps(
                    models,
                    images,
                    np.arange(32) if models.n_levels else None,
                    calibration.code_threshold,
                    settings,
                )
                fg = maps.foreground
                flagged = maps.maps > calibration.pixel_threshold
                if sick and lesion[fg].any():
                    record("before", "scores", maps.maps[fg])
                    record("before", "labels", lesion[fg])
                    record("before", "dice", dice(flagged[fg], lesion[fg]))
                elif not sick:
                    record("before", "healthy share", float(flagged[fg].mean()))
            print(
                f"{i:2d} {kind} {acquisition.orientation} {acquisition.voxel_mm} "
                f"skull={acquisition.skull} neck_to_mm={acquisition.neck_to_mm} "
                f"atrophy={acquisition.atrophy:.2f}: done",
                flush=True,
            )
    report(results, args.alpha)
    return 0


def report(results: dict, alpha: float) -> None:
    print(
        f"\n| method | healthy brain voxels flagged (alpha {alpha}; mean +- s.e. over scans) "
        "| healthy scans warned | lesioned scans warned | voxel AUPRC | Dice at calibrated "
        "threshold (mean over scans) | best Dice | lesion voxel share | registration error mm "
        "| seconds per volume |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, r in results.items():
        print(table_row(method, r))
    print(
        f"\n| method | scans flagged (Simes at {alpha}): healthy | lesioned | lesioned, a "
        f"lesion >= {LARGE_LESION:.1%} of a slice's brain | shift check warned: inverted "
        "contrast | heavy noise |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for method, r in results.items():
        cells = [count(r, key) for key in ("flagged healthy", "flagged lesioned", "flagged large")]
        cells += [count(r, key) for key in ("warned inverted", "warned noisy")]
        print(f"| {method} | " + " | ".join(cells) + " |")


def count(r: dict, key: str) -> str:
    values = r.get(key)
    return f"{int(np.sum(values))} of {len(values)}" if values else "-"


def table_row(method: str, r: dict) -> str:
    """One row of the first table: voxels, warnings, overlap, registration, time."""
    share = np.asarray(r.get("healthy share", [np.nan]))
    se = share.std(ddof=1) / np.sqrt(len(share)) if len(share) > 1 else np.nan
    scores = np.concatenate(r["scores"]) if r.get("scores") else None
    labels = np.concatenate(r["labels"]) if r.get("labels") else None
    auprc = average_precision(scores, labels) if scores is not None else np.nan
    best = best_dice(scores, labels)[0] if scores is not None else np.nan
    error = f"{np.mean(r['registration']):.2f}" if r.get("registration") else "-"
    seconds = f"{np.mean(r['seconds']):.1f}" if r.get("seconds") else "-"
    return (
        f"| {method} | {share.mean():.4f} +- {se:.4f} | {count(r, 'warned healthy')} | "
        f"{count(r, 'warned lesioned')} | {auprc:.3f} | "
        f"{np.mean(r.get('dice', [np.nan])):.3f} | {best:.3f} | "
        f"{np.mean(labels) if labels is not None else np.nan:.4f} | {error} | {seconds} |"
    )


if __name__ == "__main__":
    sys.exit(main())
