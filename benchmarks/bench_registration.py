"""Registration to MNI152 on synthetic scans with known transforms: refusals, error, brain masks
and time per volume.

Two kinds of scans (brainvq.evaluation.synthetic_scans), each with the truth known:
- tidy (`--n`): the template with and without a skull, under a smooth deformation, through random
  acquisitions (orientation codes, 1 mm, 0.9 mm and 5 mm thick slices, fields of view cropped or
  padded, rotations up to 15 degrees, shifts, 10% scaling, contrast curves, bias fields, noise);
- raw heads (`--heads`): as they come off a research scanner: skull, face, neck and shoulders in
  the field of view (its centre of mass 4-8 cm below the brain), 1 or 2 mm, mostly sagittal,
  pitched up to 25 degrees, 85-110% of the template's size, half of them atrophied (enlarged
  ventricles and sulci), noisy background, the origin anywhere (a third at the volume's corner).

Per volume: refused (the registration found no brain: brainvq refuses such a scan); error: the
distance between where the registration and the truth (deformation included, which an affine
cannot undo) put the template's brain voxels, mean and 95th percentile; a failure: refused, or a
mean error above 5 mm; the brain mask brainvq would use (`brain_mask.scan_brain_mask`: its
kind and its Dice with the true brain) beside the atlas mask's Dice; the registration's wall time.

    python benchmarks/bench_registration.py [--n 24] [--heads 16] [--seed 0] [--scans DIR] [--ants]

`--scans DIR` keeps the scans (NIfTI + the truth as .npz) and reads them back on the next run, so
that an earlier brainvq can be measured on the same scans (`PYTHONPATH=OLD/src python
benchmarks/bench_registration.py --scans DIR ...`: with every scan already there, the script
imports only what every version has). --ants also runs ANTsPy's
`registration(type_of_transform="Affine")` on the same scans (when `ants` imports; it is not a
brainvq dependency: it pins NumPy/SciPy below brainvq's, so run it in a separate environment with
`pip install antspyx nibabel nilearn SimpleITK` and brainvq installed with --no-deps).
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


def errors(to_scan: np.ndarray, true_points: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) mm between where to_scan and the truth (true_points (3, N)) put `points` (3, N)."""
    found = to_scan[:3, :3] @ points + to_scan[:3, 3:4]
    return np.linalg.norm(found - true_points, axis=0)


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


def make_or_load(scans: Path, name: str, draw, points: np.ndarray, seed: int):
    """(image, true_points (3, N) scan world mm of the template's brain points, brain truth
    (scan shape) bool, kind): read from scans/name.* when there, else rendered (`draw()` gives
    the acquisition) and written there."""
    image_path, truth_path = scans / f"{name}.nii.gz", scans / f"{name}.npz"
    if not (image_path.is_file() and truth_path.is_file()):
        from brainvq.evaluation.synthetic_scans import make_scan

        acquisition = draw()
        scan = make_scan(acquisition, seed=seed)
        kind = (
            "raw head"
            if acquisition.neck_to_mm is not None
            else ("skull" if acquisition.skull else "skull-stripped")
            + (", 5 mm slices" if max(acquisition.voxel_mm) > 2 else "")
        )
        nib.save(scan.image, str(image_path))
        np.savez_compressed(
            truth_path,
            true_points=scan.true_scan_points(points),
            brain=scan.brain,
            kind=np.array(kind),
            acquisition=np.array(repr(acquisition)),
        )
    image = nib.load(str(image_path))
    with np.load(truth_path) as truth:
        return image, truth["true_points"], truth["brain"], str(truth["kind"])


def mask_dice(data, affine, registration, brain):
    """(kind of brainvq's mask, its Dice with the truth, the atlas mask's Dice with the truth);
    None for a brainvq without the brain_mask module (before issue 27)."""
    try:
        from brainvq.data.space.brain_mask import scan_brain_mask
        from brainvq.data.space.scan import Scan, reference_in_scan
    except ImportError:
        return None
    scan = Scan(Path("scan"), data, affine, None)
    mask, kind, _ = scan_brain_mask(scan, registration)
    atlas = reference_in_scan(scan, registration, load_reference().signed_distance(), cval=1e3)

    def dice(a, b):
        return 2 * float((a & b).sum()) / float(a.sum() + b.sum())

    return kind, dice(mask, brain), dice(atlas <= 0, brain)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="tidy scans (half with a skull)")
    p.add_argument("--heads", type=int, default=16, help="raw heads with neck and shoulders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scans", type=Path, help="keep the scans here and read them back")
    p.add_argument("--ants", action="store_true", help="also ANTsPy's Affine registration")
    args = p.parse_args()
    print(describe_machine())
    points = brain_points()
    rows: dict[str, list[tuple]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scans = args.scans or Path(tmp)
        scans.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        plan = [(f"tidy{i}", i) for i in range(args.n)]
        plan += [(f"head{i}", args.n + i) for i in range(args.heads)]
        for name, i in plan:

            def draw(i=i):
                from brainvq.evaluation.synthetic_scans import (
                    random_acquisition,
                    random_head_acquisition,
                )

                if i < args.n:
                    return random_acquisition(rng, skull=bool(i % 2))
                return random_head_acquisition(rng)

            image, true_points, brain, kind = make_or_load(
                scans, name, draw, points, args.seed * 1000 + i
            )
            data = np.asarray(image.dataobj, dtype=np.float32)
            result = register_volume(data, image.affine)
            refused = bool(result.metric > -0.15)  # brainvq's criterion (FOUND_BRAIN_MI)
            e = errors(result.to_scan, true_points, points)
            masks = mask_dice(data, image.affine, result, brain)
            rows.setdefault(f"brainvq (SimpleITK) | {kind}", []).append(
                (e.mean(), np.percentile(e, 95), result.seconds, refused, masks)
            )
            line = f"{name} {kind}: MI {result.metric:.2f} {e.mean():.2f}/" + (
                f"{np.percentile(e, 95):.2f} mm {result.seconds:.1f} s"
                + (" REFUSED" if refused else "")
                + (f"; mask {masks[0]} Dice {masks[1]:.3f} (atlas {masks[2]:.3f})" if masks else "")
            )
            if args.ants:
                to_scan, seconds = ants_to_scan(scans / f"{name}.nii.gz")
                e = errors(to_scan, true_points, points)
                rows.setdefault(f"ANTsPy Affine | {kind}", []).append(
                    (e.mean(), np.percentile(e, 95), seconds, False, None)
                )
                line += f"; ANTsPy {e.mean():.2f}/{np.percentile(e, 95):.2f} mm {seconds:.1f} s"
            print(line, flush=True)
    report(rows)
    return 0


def report(rows: dict) -> None:
    print(
        "\n| method | scans | volumes | refused | failures (refused or mean > 5 mm) | mean error "
        "mm (median over volumes) | 95th pct mm (median) | worst volume mean mm | brain mask "
        "used: Dice with the truth (kinds) | atlas mask's Dice | seconds per volume |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in sorted(rows):
        v = rows[name]
        method, kind = name.split(" | ")
        mean = np.array([r[0] for r in v])
        p95 = np.array([r[1] for r in v])
        refused = np.array([r[3] for r in v])
        masks = [r[4] for r in v if r[4] is not None]
        if masks:
            kinds = ", ".join(
                f"{k} {sum(m[0] == k for m in masks)}" for k in sorted({m[0] for m in masks})
            )
            used = f"{np.mean([m[1] for m in masks]):.3f} ({kinds})"
            atlas = f"{np.mean([m[2] for m in masks]):.3f}"
        else:
            used = atlas = "-"
        print(
            f"| {method} | {kind} | {len(v)} | {refused.sum()} | "
            f"{(refused | (mean > 5)).sum()} | {np.median(mean):.2f} | {np.median(p95):.2f} | "
            f"{mean.max():.2f} | {used} | {atlas} | {np.mean([r[2] for r in v]):.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
