"""Volumes brought to a run: the run's place in the reference space, and scans aligned to it.

`run_space` gives a run's frame and training intensities (RUN/space.json; made on first use from
the run's configuration and training slices, so runs trained before it existed get one too).
`align_inputs` brings every NIfTI volume of an input (a file or a folder of them) onto the run's
frame (brainvq.data.space.align), so that anomaly maps, reconstructions and code maps are
computed on the anatomy the run was trained on and carried back to each scan's own voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainvq.app.run_data import run_slices
from brainvq.data.loader import DEMO, resolve_source
from brainvq.data.nifti import is_nifti_name
from brainvq.data.space.align import AlignedScan, align_scan
from brainvq.data.space.run_space import (
    RunSpace,
    frame_for_source,
    learn_outside_profile,
    learn_run_landmarks,
)
from brainvq.io.atomic import atomic_write_json
from brainvq.progress import progress as progress_bar
from brainvq.run import RunLayout, load_run, read_json
from brainvq.run_config import RunConfig


def source_kind(config: RunConfig) -> str:
    """The kind of the run's data source: demo, oasis, nifti or folder."""
    if config.data.source == DEMO:
        return DEMO
    return resolve_source(config.data.source, config.data.n_levels).kind


def run_space(run_dir: str | Path, config: RunConfig | None = None) -> RunSpace:
    """The run's RunSpace: RUN/space.json, or made now (frame from the source's kind, landmarks
    from its training slices) and written there."""
    layout = RunLayout(run_dir)
    doc = read_json(layout.space)
    if doc:
        try:
            return RunSpace.from_dict(doc)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{layout.space}: not a brainvq space record ({e})") from None
    config = config or load_run(run_dir)
    z_range = tuple(config.data.z_range_mm) if config.data.z_range_mm else None
    frame, how = frame_for_source(source_kind(config), config.data.n_levels, z_range)
    train = run_slices(config, progress=False).require_split("train")
    if train.n_levels and train.n_levels != frame.n_levels:
        raise ValueError(
            f"{layout.root}: its slices have {train.n_levels} levels, its frame "
            f"{frame.n_levels}; expected them to agree"
        )
    landmarks = learn_run_landmarks(train.images, train.level, train.subject, frame)
    outside = learn_outside_profile(train.images, train.level, frame)
    space = RunSpace(frame, how, landmarks, outside)
    atomic_write_json(layout.space, space.to_dict())
    return space


def volume_files(path: str | Path) -> list[Path] | None:
    """The NIfTI volumes of an input: [the file] or every volume in a folder (sorted), or None
    when the input is not volumes (an image, a folder of images, an OASIS set)."""
    path = Path(path)
    if path.is_file():
        return [path] if is_nifti_name(path.name) else None
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_nifti_name(p.name))
        others = [
            p
            for p in path.rglob("*")
            if p.is_file() and not is_nifti_name(p.name) and not p.name.startswith(".")
        ]
        return found if found and not others else None
    return None


def align_inputs(
    run_dir: str | Path,
    volumes: list[Path],
    *,
    mask: str | Path | None = None,
    intensity: str = "landmarks",
    threads: int | None = None,
    progress: bool = True,
) -> list[AlignedScan]:
    """Every volume on the run's frame at its working size. `mask` (one volume only): the
    user's brain mask on the scan's voxels; intensity: the standardisation
    (brainvq.data.space.intensity.METHODS)."""
    if mask is not None and len(volumes) != 1:
        raise ValueError(f"--mask {mask}: a mask goes with one input volume, got {len(volumes)}")
    config = load_run(run_dir)
    space = run_space(run_dir, config)
    out = []
    for path in progress_bar(volumes, len(volumes), "aligning volumes", progress):
        out.append(
            align_scan(
                path,
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


def inspect_volumes(volumes: list[Path], out_dir: Path, progress: bool = True) -> list[str]:
    """Register each volume to the reference (OASIS's frame) and write its registration check
    (<scan>_registration.png, a new name if one exists) to out_dir. Returns a line per volume."""
    import nibabel as nib

    from brainvq.data.nifti import canonical_landmarks
    from brainvq.data.space.check_figure import registration_figure
    from brainvq.io.atomic import output_folder
    from brainvq.io.images import save_png

    out_dir = output_folder(out_dir, "--figures")
    frame, _ = frame_for_source("nifti", 32)
    lines = []
    for path in progress_bar(volumes, len(volumes), "registering volumes", progress):
        a = align_scan(path, frame, 128, canonical_landmarks())
        figure = registration_figure(a.scan.data, a.scan.affine, a.registration.to_scan, frame)
        stem = path.name.removesuffix(".gz").removesuffix(".nii")
        target = out_dir / f"{stem}_registration.png"
        n = 1
        while target.exists():
            target = out_dir / f"{stem}_registration_{n}.png"
            n += 1
        save_png(target, figure)
        codes = "".join(nib.aff2axcodes(a.scan.affine))
        voxel = " x ".join(f"{v:.2f}" for v in a.scan.voxel_mm)
        lines.append(
            f"{path}: {codes}, {a.scan.shape} voxels of {voxel} mm; {a.mask_kind} brain mask; "
            f"registered (mutual information {a.registration.metric:.2f}, scales "
            f"{np.round(a.registration.scales, 2).tolist()}); {len(a.levels)} of "
            f"{frame.n_levels} OASIS levels covered; check: {target}"
        )
    return lines


def slice_names(aligned: AlignedScan, root: Path) -> list[str]:
    """`<volume, relative to root>#level<k>` for each covered level."""
    rel = aligned.scan.path.name if root.is_file() else aligned.scan.path.relative_to(root)
    return [f"{Path(rel).as_posix()}#level{int(k)}" for k in aligned.levels]


def levels_covered(aligned: list[AlignedScan]) -> np.ndarray:
    """(N,) int64: the frame level of every covered slice of every volume, volume by volume."""
    return np.concatenate([a.levels for a in aligned]).astype(np.int64)
