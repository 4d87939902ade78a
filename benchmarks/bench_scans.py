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
  +- its standard error), the scans warned as unlike the calibration, and on lesioned scans
  the voxel AUPRC, the Dice at the calibrated threshold and the best Dice; the registration
  error (mm over brain voxels, deformation included) and seconds per volume (registration,
  alignment, healing, the shift check and the scan-space maps);
- before (the NIfTI path brainvq had before, reimplemented here as it was: 32 slices spread
  evenly over the slices with foreground, 0.5/99.5-percentile scaling, the brain padded into the
  frame wherever it lies, no registration): the same measures on its own slice stack.

    .venv/bin/python benchmarks/bench_scans.py --run runs/demo [--healthy 12 --lesioned 12]
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

from brainvq.app.anomaly import find_anomalies
from brainvq.app.anomaly_calibration import (
    anomaly_settings,
    run_calibration,
)
from brainvq.data.imaging import pad_to_square, resize_square
from brainvq.data.space.template import load_reference
from brainvq.evaluation.anomaly_benchmark import average_precision, best_dice, dice
from brainvq.evaluation.synthetic_scans import make_scan, random_acquisition, random_lesions
from brainvq.hardware import machine
from brainvq.inference.anomaly_maps import anomaly_maps
from brainvq.inference.generate import load_run_models
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--healthy", type=int, default=12)
    p.add_argument("--lesioned", type=int, default=12)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intensity", nargs="+", default=["landmarks", "white_matter_peak"])
    p.add_argument("--skip-before", action="store_true")
    args = p.parse_args()
    print(machine().describe())
    config = load_run(args.run)
    models = load_run_models(args.run)
    size = config.data.size
    settings = anomaly_settings(config)
    calibration, note = run_calibration(args.run, args.alpha, settings, models)
    print(note or f"calibration: {calibration.source}, {calibration.n_slices} slices")
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, list]] = {}

    def record(method: str, key: str, value) -> None:
        results.setdefault(method, {}).setdefault(key, []).append(value)

    reference = load_reference()
    points = reference.affine[:3, :3] @ np.argwhere(reference.mask)[::97].T
    points = points + reference.affine[:3, 3:4]  # (3, N) template brain, MNI mm
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.healthy + args.lesioned):
            sick = i >= args.healthy
            acquisition = random_acquisition(rng)
            lesions = random_lesions(rng, int(rng.integers(1, 4))) if sick else []
            scan = make_scan(acquisition, lesions, seed=args.seed * 1000 + i)
            path = Path(tmp) / f"scan{i}.nii.gz"
            nib.save(scan.image, str(path))
            kind = "lesioned" if sick else "healthy"
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
                record(name, f"warned {kind}", result.shift[0]["warn"])
                if sick:
                    record(name, "scores", in_scan[covered])
                    record(name, "labels", scan.lesion[covered])
                    record(name, "dice", dice(flagged[covered], scan.lesion[covered]))
                else:
                    record(name, "healthy share", float(flagged[covered].mean()))
                found = aligned.registration.to_scan
                error = found[:3, :3] @ points + found[:3, 3:4] - scan.true_scan_points(points)
                record(name, "registration", float(np.linalg.norm(error, axis=0).mean()))
            if not args.skip_before:
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
                f"skull={acquisition.skull}: done",
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
        share = np.asarray(r.get("healthy share", [np.nan]))
        se = share.std(ddof=1) / np.sqrt(len(share)) if len(share) > 1 else np.nan
        scores = np.concatenate(r["scores"]) if r.get("scores") else None
        labels = np.concatenate(r["labels"]) if r.get("labels") else None
        auprc = average_precision(scores, labels) if scores is not None else np.nan
        best = best_dice(scores, labels)[0] if scores is not None else np.nan

        def warned(kind: str, r: dict = r) -> str:
            values = r.get(f"warned {kind}")
            return f"{int(np.sum(values))} of {len(values)}" if values else "-"

        error = f"{np.mean(r['registration']):.2f}" if r.get("registration") else "-"
        seconds = f"{np.mean(r['seconds']):.1f}" if r.get("seconds") else "-"
        print(
            f"| {method} | {share.mean():.4f} +- {se:.4f} | {warned('healthy')} | "
            f"{warned('lesioned')} | {auprc:.3f} | {np.mean(r.get('dice', [np.nan])):.3f} | "
            f"{best:.3f} | {np.mean(labels) if labels is not None else np.nan:.4f} | {error} | "
            f"{seconds} |"
        )


if __name__ == "__main__":
    sys.exit(main())
