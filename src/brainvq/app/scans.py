"""Volumes brought to a run: scans found, read and aligned to the run's place in the reference
space (its frame and training intensities: brainvq.app.run_data.run_space).

`input_scans` finds the scans of an input (a volume file of any format, a folder of them, a DICOM
series or DICOMDIR, a BIDS tree: brainvq.data.volumes), and `align_inputs` reads each in turn and
brings it onto the run's frame (brainvq.data.space.align), so that anomaly maps,
reconstructions and code maps are computed on the anatomy the run was trained on and carried
back to each scan's own voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainvq.app.run_data import run_space
from brainvq.data.loader import DEMO
from brainvq.data.space.align import AlignedScan, align_scan
from brainvq.data.space.run_space import frame_for_source
from brainvq.data.volumes.discovery import Discovery, ScanRecord, find_scans, refuse_series
from brainvq.progress import progress as progress_bar
from brainvq.run import load_run


def input_scans(path: str | Path, series: str | None = None) -> Discovery | None:
    """The scans of an input (brainvq.data.volumes.find_scans), or None when it is not volumes
    (an image, a folder of images, an OASIS set, the demo). series: `--series`, the DICOM series
    to take; ValueError when it is given for an input that is not volumes."""
    found = None if str(path) == DEMO else find_scans(path, series)
    if found is None:
        refuse_series(series, path)
    return found


def align_inputs(
    run_dir: str | Path,
    scans: list[ScanRecord],
    *,
    mask: str | Path | None = None,
    intensity: str = "landmarks",
    threads: int | None = None,
    progress: bool = True,
) -> list[AlignedScan]:
    """Every scan, read in turn, on the run's frame at its working size. `mask` (one scan
    only): the user's brain mask on the scan's voxels; intensity: the standardisation
    (brainvq.data.space.intensity.METHODS)."""
    if mask is not None and len(scans) != 1:
        raise ValueError(f"--mask {mask}: a mask goes with one input volume, got {len(scans)}")
    config = load_run(run_dir)
    space = run_space(run_dir, config)
    out = []
    for record in progress_bar(scans, len(scans), "aligning volumes", progress):
        out.append(
            align_scan(
                record.read(),
                space.frame,
                config.data.size,
                space.landmarks,
                user_mask=mask,
                intensity=intensity,
                outside_profile=space.outside_profile,
                threads=threads,
            )
        )
    return out


def inspect_volumes(scans: list[ScanRecord], out_dir: Path, progress: bool = True) -> list[str]:
    """Register each scan to the reference (OASIS's frame) and write its registration check
    (<scan>_registration.png, a new name if one exists) to out_dir. Returns a line per scan."""
    import nibabel as nib

    from brainvq.atomic import output_folder
    from brainvq.data.nifti import canonical_landmarks
    from brainvq.data.space.check_figure import registration_figure
    from brainvq.io.images import save_png

    out_dir = output_folder(out_dir, "--figures")
    frame, _ = frame_for_source("nifti", 32)
    lines = []
    for record in progress_bar(scans, len(scans), "registering volumes", progress):
        a = align_scan(record.read(), frame, 128, canonical_landmarks())
        figure = registration_figure(
            a.scan.data, a.scan.affine, a.registration.to_scan, frame, mask=a.mask
        )
        target = out_dir / f"{a.scan.name}_registration.png"
        n = 1
        while target.exists():
            target = out_dir / f"{a.scan.name}_registration_{n}.png"
            n += 1
        save_png(target, figure)
        codes = "".join(nib.aff2axcodes(a.scan.affine))
        voxel = " x ".join(f"{v:.2f}" for v in a.scan.voxel_mm)
        lines.append(
            f"{a.scan.path}: {codes}, {a.scan.shape} voxels of {voxel} mm; {a.mask_kind} brain "
            f"mask; registered (mutual information {a.registration.metric:.2f}, scales "
            f"{np.round(a.registration.scales, 2).tolist()}); {len(a.levels)} of "
            f"{frame.n_levels} OASIS levels covered; check: {target}"
        )
    return lines


def input_name(aligned: AlignedScan, root: Path) -> str:
    """The scan as the input names it: a file's path relative to the input `root` (its name
    when root is the file), a DICOM series' name."""
    path = aligned.scan.path
    if path.is_dir():
        return aligned.scan.name
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def slice_names(aligned: AlignedScan, root: Path) -> list[str]:
    """`<scan>#level<k>` for each covered level (<scan>: `input_name`)."""
    rel = input_name(aligned, root)
    return [f"{rel}#level{int(k)}" for k in aligned.levels]


def levels_covered(aligned: list[AlignedScan]) -> np.ndarray:
    """(N,) int64: the frame level of every covered slice of every volume, volume by volume."""
    return np.concatenate([a.levels for a in aligned]).astype(np.int64)
