"""`brainvq reconstruct` and `brainvq encode`: a VQ-VAE's reconstructions and code maps of any
input. 2D inputs go through brainvq.app.writers; volumes (NIfTI, MGZ, NRRD/MHA, DICOM series,
BIDS trees: brainvq.data.volumes) are computed on every covered level of the scan on the model's
frame and written in the scan's own space as well (brainvq.app.volume_files). A 3D model codes
a folder's subjects and a scan's covered levels as volumes (brainvq.app.reconstruct_3d), and
writes the same files.

A VQ-VAE inside a run uses the run's frame and intensity scale (brainvq.app.run_data.run_space); a
bundle on its own falls back to OASIS's frame and intensities, and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainvq.app.reconstruct_3d import (
    encode_subjects,
    reconstruct_subjects,
    scan_first_level,
)
from brainvq.app.run_data import run_space
from brainvq.app.scans import input_name, input_scans, slice_names
from brainvq.app.volume_files import write_volume_outputs
from brainvq.app.writers import GRID, output_names, reconstruct_to_folder, write_manifest
from brainvq.atomic import atomic_path, output_folder
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.data.nifti import canonical_landmarks
from brainvq.data.space.align import AlignedScan, align_scan
from brainvq.data.space.run_space import frame_for_source
from brainvq.data.volumes.discovery import Discovery
from brainvq.inference.codes import encode_images, reconstruct, to_uint8, write_codes_file
from brainvq.inference.level_stacks import (
    CodeVolume,
    code_cells,
    encode_stack,
    reconstruct_stack,
    write_code_volumes,
)
from brainvq.io.bundle import Bundle, load_vqvae
from brainvq.io.images import image_grid, save_png
from brainvq.progress import progress as progress_bar
from brainvq.run import RunLayout

CODES_FILE = "codes.npz"


def model_run(model_path: Path) -> Path | None:
    """The run a VQ-VAE bundle belongs to (the run itself, or RUN/vqvae/VQVAE_Model), if any."""
    path = Path(model_path)
    for candidate in (path, path.parent.parent):
        if RunLayout(candidate).config.is_file():
            return candidate
    return None


def align_for_model(
    model_path: Path, bundle: Bundle, found: Discovery, progress: bool = True
) -> tuple[list[AlignedScan], list[str]]:
    """Every scan, read in turn, on the model's frame. Returns (the aligned scans, notes)."""
    run = model_run(model_path)
    size = bundle.config.image_size
    notes = list(found.notes)
    outside: tuple[float, ...] = ()
    if run is not None:
        space = run_space(run)
        frame, landmarks, outside = space.frame, space.landmarks, space.outside_profile
    else:
        frame, _ = frame_for_source("nifti", 32)
        landmarks = canonical_landmarks()
        notes.append(f"{model_path} is not inside a run: OASIS's frame and intensity scale assumed")
    aligned = [
        align_scan(record.read(), frame, size, landmarks, outside_profile=outside)
        for record in progress_bar(found.scans, len(found.scans), "aligning volumes", progress)
    ]
    for a in aligned:
        notes += [f"{a.scan.name}: {note}" for note in a.notes]
    return aligned, notes


def reconstruct_volumes(
    model_path: Path, bundle: Bundle, found: Discovery, root: Path, out_dir: Path
) -> tuple[list[Path], Path, list[str]]:
    """PNGs of every covered level (as for 2D inputs), grid.png, manifest.csv and, per volume,
    <scan>_reconstruction.nii.gz in the scan's space and units (NaN where not covered), its
    aligned version, the transform and the registration check. Returns (files, grid, notes)."""
    aligned, notes = align_for_model(model_path, bundle, found)
    written, originals, recons, filenames, levels = [], [], [], [], []
    for a in aligned:
        if bundle.config.dims == 3:  # the covered levels as one volume
            recon = reconstruct_stack(bundle.model, a.images, scan_first_level(a))[0]
        else:
            recon = to_uint8(reconstruct(bundle.model, a.images)[0])  # (L, H, W)
        in_scan = a.to_scan(a.to_scan_units(recon))
        scan_space = {"reconstruction": (in_scan, "brainvq VQ-VAE reconstruction")}
        on_frame = {
            "scan": (a.images.astype(np.float32) / 255, "scan on the frame, standardised"),
            "reconstruction": (recon.astype(np.float32) / 255, "reconstruction on the frame"),
        }
        written += write_volume_outputs(out_dir, a, scan_space, on_frame)[0]
        originals.append(a.images)
        recons.append(recon)
        filenames += slice_names(a, root)
        levels += a.levels.tolist()
    images, recon_all = np.concatenate(originals), np.concatenate(recons)
    names = output_names(filenames, levels)
    written += [save_png(out_dir / n, img) for n, img in zip(names, recon_all, strict=True)]
    n = min(8, len(images))
    grid = save_png(out_dir / GRID, image_grid(np.concatenate([images[:n], recon_all[:n]]), n))
    rows = [[o, i, k] for o, i, k in zip(names, filenames, levels, strict=True)]
    written.append(write_manifest(out_dir, ["output", "input", "level"], rows))
    return [*written, grid], grid, notes


def encode_volumes(
    model_path: Path, bundle: Bundle, found: Discovery, root: Path, out_dir: Path
) -> tuple[list[Path], list[str]]:
    """codes.npz (codes (N, h, w) int16, names, levels of every covered level of every volume,
    dims 2; a 3D model: each volume's code volume, brainvq.inference.level_stacks) and, per
    volume, <scan>_codes.nii.gz: each voxel's code index (nearest latent cell; -1 where not
    covered) in the scan's space, its aligned version, the transform and the registration
    check. Returns (files, notes)."""
    aligned, notes = align_for_model(model_path, bundle, found)
    model, dims = bundle.model, bundle.config.dims
    written, all_codes, names, levels, volumes = [], [], [], [], []
    d = bundle.config.downsample
    for a in aligned:
        if dims == 3:
            first = scan_first_level(a)
            codes, first_latent = encode_stack(model, a.images, first)  # (L', h, w)
            cells = code_cells(model, codes, first, len(a.levels)).astype(np.float32)
            volumes.append(CodeVolume(input_name(a, root), first_latent, len(codes)))
        else:
            codes = encode_images(model, a.images)  # (L, h, w)
            cells = np.repeat(np.repeat(codes, d, axis=1), d, axis=2).astype(np.float32)
            names += slice_names(a, root)
            levels += a.levels.tolist()
        in_scan = a.to_scan(cells, fill=-1.0, order=0)
        scan_space = {"codes": (np.round(in_scan).astype(np.int16), "brainvq code indices")}
        on_frame = {"codes": (cells, "brainvq code indices on the frame")}
        written += write_volume_outputs(out_dir, a, scan_space, on_frame)[0]
        all_codes.append(codes)
    if dims == 3:
        stride, side = bundle.config.level_stride, bundle.config.latent_size
        write_code_volumes(out_dir / CODES_FILE, volumes, all_codes, stride, side)
        return [*written, out_dir / CODES_FILE], notes
    with atomic_path(out_dir / CODES_FILE) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            codes=np.concatenate(all_codes).astype(np.int16),
            names=np.array(names, dtype=str),
            levels=np.array(levels, dtype=np.int64),
            dims=np.int64(2),
        )
    return [*written, out_dir / CODES_FILE], notes


def reconstruct_input(
    model_path: Path,
    source: str | Path,
    out_dir: Path,
    limit: int | None = None,
    series: str | None = None,
) -> tuple[list[Path], Path, list[str]]:
    """`brainvq reconstruct`: volumes as above (series: the DICOM series to take, `--series`),
    2D inputs as reconstruct_to_folder (limit: at most this many slices, 2D inputs only), or
    with a 3D model as reconstruct_subjects (limit: the whole subjects within it).
    Returns (files, grid, notes)."""
    found = input_scans(source, series)
    if found is not None and limit is not None:
        raise ValueError("--limit applies to 2D inputs; a volume gives every covered level")
    bundle = load_vqvae(model_path)
    if found is not None:
        out_dir = output_folder(out_dir)
        return reconstruct_volumes(model_path, bundle, found, Path(source), out_dir)
    if bundle.config.dims == 3:
        return (*reconstruct_subjects(bundle, source, out_dir, limit=limit), [])
    return (*reconstruct_to_folder(model_path, source, out_dir, limit=limit, bundle=bundle), [])


def encode_input(
    model_path: Path, source: str | Path, out_dir: Path, series: str | None = None
) -> tuple[list[Path], list[str]]:
    """`brainvq encode`: codes.npz of every slice of `source` (codes (N, h, w) int16, names,
    levels: -1 when unknown, dims 2; a 3D model: every subject's or volume's code volume,
    brainvq.inference.level_stacks); volumes also as code-index volumes in their own space
    (series: the DICOM series to take, `--series`)."""
    found = input_scans(source, series)
    bundle = load_vqvae(model_path)
    if found is None and bundle.config.dims == 3:
        return [encode_subjects(bundle, source, Path(out_dir) / CODES_FILE)], []
    out_dir = output_folder(out_dir)
    if found is not None:
        return encode_volumes(model_path, bundle, found, Path(source), out_dir)
    path = Path(source)
    size = bundle.config.image_size
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        images = prepare_slice(path.read_bytes(), str(path), size)[0][None]
        names, levels = np.array([path.name]), np.array([-1])
    else:
        sliceset = load_slices(source, size=size)  # a store: read a batch at a time
        images, names, levels = sliceset.images, sliceset.filename, sliceset.level
    write_codes_file(out_dir / CODES_FILE, bundle.model, images, names, levels)
    return [out_dir / CODES_FILE], []
