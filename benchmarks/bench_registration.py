"""Registration to MNI152 on synthetic scans with known transforms: error and time per volume.

Scans (brainvq.evaluation.synthetic_scans): the template with and without a skull, under a smooth
deformation (the demo cohort's kind, in 3D) and random acquisitions (orientation codes, 1 mm,
0.9 mm and 5 mm thick slices, fields of view cropped or padded, rotations up to 15 degrees,
shifts, 10% scaling, contrast curves, bias fields, noise). Error: the distance between where the
registration and the truth (deformation included, which an affine cannot undo) put the
template's brain voxels, mean and 95th percentile per volume; time: the registration's wall time.

    python benchmarks/bench_registration.py [--n 24] [--seed 0] [--ants]

--ants also runs ANTsPy's `registration(type_of_transform="Affine")` on the same scans (when
`ants` imports; it is not a brainvq dependency: it pins NumPy/SciPy below brainvq's, so run it
in a separate environment with `pip install antspyx nibabel nilearn SimpleITK` and brainvq
installed with --no-deps).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainvq.data.space.registration import register_volume
from brainvq.data.space.template import load_reference
from brainvq.evaluation.synthetic_scans import make_scan, random_acquisition


def describe_machine() -> str:
    try:
        from brainvq.hardware import machine

        return machine().describe()
    except ImportError:  # an environment without torch (the ANTsPy comparison)
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def brain_points() -> np.ndarray:
    """(3, N) MNI mm: every 50th voxel of the template's brain mask."""
    reference = load_reference()
    idx = np.argwhere(reference.mask)[::50]
    return reference.affine[:3, :3] @ idx.T + reference.affine[:3, 3:4]


def errors(to_scan: np.ndarray, scan, points: np.ndarray) -> np.ndarray:
    found = to_scan[:3, :3] @ points + to_scan[:3, 3:4]
    return np.linalg.norm(found - scan.true_scan_points(points), axis=0)


def ants_to_scan(path: Path) -> tuple[np.ndarray, float]:
    """ANTsPy's affine registration of the scan at `path` to the 2 mm template: (4, 4) MNI mm ->
    scan world mm (RAS), seconds."""
    import ants
    from nilearn import datasets

    template = ants.from_nibabel_nifti(datasets.load_mni152_template(resolution=2))
    moving = ants.image_read(str(path))
    start = time.perf_counter()
    result = ants.registration(template, moving, type_of_transform="Affine")
    seconds = time.perf_counter() - start
    tx = ants.read_transform(result["fwdtransforms"][0])  # fixed (MNI, LPS) -> moving (LPS)
    matrix = np.asarray(tx.parameters[:9]).reshape(3, 3)
    centre = np.asarray(tx.fixed_parameters)
    offset = np.asarray(tx.parameters[9:]) + centre - matrix @ centre
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = matrix, offset
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip, seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="scans (half with a skull)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ants", action="store_true", help="also ANTsPy's Affine registration")
    args = p.parse_args()
    print(describe_machine())
    rng = np.random.default_rng(args.seed)
    points = brain_points()
    rows: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            acquisition = random_acquisition(rng, skull=bool(i % 2))
            scan = make_scan(acquisition, seed=args.seed * 1000 + i)
            data = np.asarray(scan.image.dataobj, dtype=np.float32)
            kind = ("skull" if acquisition.skull else "skull-stripped") + (
                ", 5 mm slices" if max(acquisition.voxel_mm) > 2 else ""
            )
            result = register_volume(data, scan.image.affine)
            e = errors(result.to_scan, scan, points)
            rows.setdefault(f"brainvq (SimpleITK) | {kind}", []).append(
                (e.mean(), np.percentile(e, 95), result.seconds)
            )
            line = f"{i:2d} {acquisition.orientation} {acquisition.voxel_mm} {kind}: " + (
                f"brainvq {e.mean():.2f}/{np.percentile(e, 95):.2f} mm {result.seconds:.1f} s"
            )
            if args.ants:
                path = Path(tmp) / f"scan{i}.nii.gz"
                nib.save(scan.image, str(path))
                to_scan, seconds = ants_to_scan(path)
                e = errors(to_scan, scan, points)
                rows.setdefault(f"ANTsPy Affine | {kind}", []).append(
                    (e.mean(), np.percentile(e, 95), seconds)
                )
                line += f"; ANTsPy {e.mean():.2f}/{np.percentile(e, 95):.2f} mm {seconds:.1f} s"
            print(line, flush=True)
    print(
        "\n| method | scans | volumes | mean error mm (median over volumes) | 95th pct mm "
        "(median) | worst volume mean mm | failures (mean > 5 mm) | seconds per volume |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in sorted(rows):
        v = np.asarray(rows[name])
        method, kind = name.split(" | ")
        print(
            f"| {method} | {kind} | {len(v)} | {np.median(v[:, 0]):.2f} | {np.median(v[:, 1]):.2f} "
            f"| {v[:, 0].max():.2f} | {(v[:, 0] > 5).sum()} | {v[:, 2].mean():.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
