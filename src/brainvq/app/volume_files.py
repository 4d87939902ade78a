"""Answers about a scan, written in the scan's own space (and on the reference, for those who
want it). Every file atomically; names start with the scan's own name (`Scan.name`: a volume
file's name without its suffix, a BIDS image's entities, a DICOM series' `<folder>_s<N>_<title>`;
brainvq.data.volumes.discovery).

<scan>_<what>.nii.gz          the scan's shape and affine (its qform/sform codes kept): maps,
                              masks, reconstructions, healed volumes; NaN where the run's levels
                              do not reach (not covered, never scored); overlays in FSLeyes,
                              ITK-SNAP or 3D Slicer on the scan itself
aligned/<scan>_<what>.nii.gz  the same on the run's frame: (rows, columns, levels) with the
                              frame's affine into MNI152 millimetres
<scan>_transform.json         the registration: 4x4 matrices (RAS mm) reference -> scan and back
<scan>_transform.tfm          the same as an ITK transform file (LPS, fixed = MNI152, moving = the
                              scan: what resampling the scan onto MNI152 needs)
<scan>_registration.png       the registration check (brainvq.data.space.check_figure)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainvq.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from brainvq.data.nifti_codes import XFORM_MNI152, XFORM_SCANNER, nifti_gz_bytes
from brainvq.data.space.align import AlignedScan
from brainvq.data.space.check_figure import registration_figure
from brainvq.io.images import save_png

ALIGNED = "aligned"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def scan_stem(aligned: AlignedScan) -> str:
    """What the scan's output files are named after (module docstring)."""
    return aligned.scan.name


def _nifti_bytes(data: np.ndarray, affine: np.ndarray, header, description: str) -> bytes:
    if header is None:
        return nifti_gz_bytes(data, affine, description, XFORM_MNI152)
    qform = int(header["qform_code"]) or XFORM_SCANNER  # keep the scan's own codes
    sform = int(header["sform_code"]) or XFORM_SCANNER
    return nifti_gz_bytes(data, affine, description, qform, sform)


def write_in_scan_space(
    path: Path, aligned: AlignedScan, data: np.ndarray, description: str
) -> Path:
    """A volume on the scan's voxels (scan shape), with the scan's affine."""
    if data.shape != aligned.scan.shape:
        raise ValueError(
            f"{path}: expected the scan's shape {aligned.scan.shape}, got {data.shape}"
        )
    content = _nifti_bytes(data, aligned.scan.affine, aligned.scan.header, description)
    return atomic_write_bytes(path, content)


def frame_stack(aligned: AlignedScan, stack: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """(L, S, S) values on the covered levels -> (S, S, n_levels) float32, `fill` elsewhere."""
    full = np.full((aligned.frame.n_levels, aligned.size, aligned.size), fill, np.float32)
    full[aligned.levels] = stack
    return np.ascontiguousarray(full.transpose(1, 2, 0))


def write_on_frame(path: Path, aligned: AlignedScan, stack: np.ndarray, description: str) -> Path:
    """A stack on the covered levels as a NIfTI on the frame (affine into MNI152 mm)."""
    content = _nifti_bytes(
        frame_stack(aligned, stack), aligned.frame.affine_at(aligned.size), None, description
    )
    return atomic_write_bytes(path, content)


def write_transform(out_dir: Path, aligned: AlignedScan) -> list[Path]:
    """<scan>_transform.json and .tfm (see the module docstring)."""
    stem = scan_stem(aligned)
    to_scan = aligned.registration.to_scan
    doc = {
        "reference": "MNI152 2009 (nilearn), RAS millimetres",
        "scan": str(aligned.scan.path),
        "reference_to_scan": to_scan.round(6).tolist(),
        "scan_to_reference": np.linalg.inv(to_scan).round(6).tolist(),
        "meaning": "x_scan_world = reference_to_scan @ [x_mni, y_mni, z_mni, 1] (RAS mm)",
        "mutual_information": round(aligned.registration.metric, 4),
        "scales": np.round(aligned.registration.scales, 4).tolist(),
        "seconds": round(aligned.registration.seconds, 2),
    }
    lps = LPS @ to_scan @ LPS
    parameters = " ".join(f"{v:.9g}" for v in [*lps[:3, :3].ravel(), *lps[:3, 3]])
    tfm = (
        "#Insight Transform File V1.0\n#Transform 0\n"
        "Transform: AffineTransform_double_3_3\n"
        f"Parameters: {parameters}\nFixedParameters: 0 0 0\n"
    )
    return [
        atomic_write_json(out_dir / f"{stem}_transform.json", doc),
        atomic_write_text(out_dir / f"{stem}_transform.tfm", tfm),
    ]


def write_registration_check(out_dir: Path, aligned: AlignedScan) -> Path:
    figure = registration_figure(
        aligned.scan.data,
        aligned.scan.affine,
        aligned.registration.to_scan,
        aligned.frame,
        aligned.size,
        mask=aligned.mask,
    )
    return save_png(out_dir / f"{scan_stem(aligned)}_registration.png", figure)


def write_volume_outputs(
    out_dir: Path,
    aligned: AlignedScan,
    scan_space: dict[str, tuple[np.ndarray, str]],
    on_frame: dict[str, tuple[np.ndarray, str]],
) -> tuple[list[Path], dict]:
    """Write scan-space volumes (`scan_space`: what -> (scan-shaped data, description)), frame
    stacks (`on_frame`: what -> ((L, S, S) on the covered levels, description)), the transform
    and the registration check. Returns (the files, a summary of the volume for summary.json)."""
    stem = scan_stem(aligned)
    written = []
    files = {}
    for what, (data, description) in scan_space.items():
        path = write_in_scan_space(out_dir / f"{stem}_{what}.nii.gz", aligned, data, description)
        written.append(path)
        files[what] = path.name
    for what, (stack, description) in on_frame.items():
        path = out_dir / ALIGNED / f"{stem}_{what}.nii.gz"
        written.append(write_on_frame(path, aligned, stack, description))
        files[f"aligned_{what}"] = f"{ALIGNED}/{path.name}"
    written += write_transform(out_dir, aligned)
    written.append(write_registration_check(out_dir, aligned))
    frame = aligned.frame
    info = {
        "scan": str(aligned.scan.path),
        "name": stem,
        "shape": list(aligned.scan.shape),
        "voxel_mm": np.round(aligned.scan.voxel_mm, 4).tolist(),
        "brain_mask": aligned.mask_kind,
        "levels_covered": aligned.levels.tolist(),
        "levels_not_covered": {str(k): why for k, why in aligned.not_covered.items()},
        "z_mm_covered": [
            round(float(frame.level_z([aligned.levels[0]])[0]), 2),
            round(float(frame.level_z([aligned.levels[-1]])[0]), 2),
        ],
        "registration": {
            "mutual_information": round(aligned.registration.metric, 4),
            "scales": np.round(aligned.registration.scales, 4).tolist(),
            "seconds": round(aligned.registration.seconds, 2),
        },
        "files": files,
        "notes": aligned.notes,
    }
    return written, info
