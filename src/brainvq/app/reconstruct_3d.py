"""`brainvq reconstruct` and `brainvq encode` with a 3D run: volumes in, each input's own answers
out, as a 2D run gives them.

A folder of slices (an OASIS set, PNG/JPEG files named `<subject>_slice_<k>`) is read into the
store as for a 2D run. Each subject's slices, in level order, are its volume
(brainvq.data.subject_volumes.subject_stacks refuses a subject with a missing slice, or with a
number of slices that is not a multiple of the level stride, naming it: a folder that claims
whole subjects is checked, not padded), coded whole as the run's own subjects are (latent level
= first level // level stride + k, as in RUN/codes), one subject at a time, and each slice's
reconstruction is written under the slice's own name (brainvq.app.writers.output_names).

A scan's covered levels on the run's frame are one stack, padded to whole latent levels and
cropped back (brainvq.inference.level_stacks: a scan's coverage is its field of view, not the
user's choice); brainvq.app.reconstruct writes its answers in the scan's own space as for a 2D
run. Codes files hold code volumes (brainvq.inference.level_stacks.write_code_volumes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from brainvq.app.writers import GRID, output_names, write_manifest
from brainvq.atomic import output_folder
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES
from brainvq.data.space.align import AlignedScan
from brainvq.data.store import RowReader
from brainvq.data.subject_volumes import SubjectStack, subject_stacks
from brainvq.inference.codes import decode_codes, encode_images
from brainvq.inference.level_stacks import CodeVolume, write_code_volumes
from brainvq.io.bundle import Bundle
from brainvq.io.images import image_grid, save_png

GRID_SLICES = 8  # slices of the first subject the grid shows, spread over its levels


def subjects_of(
    bundle: Bundle, source: str | Path, limit: int | None = None
) -> tuple[np.ndarray, list[str], list[int], list[SubjectStack]]:
    """The slices of `source` as subjects for the 3D model `bundle`: (images (N, H, W) uint8,
    maybe a memory map; file names (N,); levels (N,); the subjects, in the order the source
    holds them). limit: the first subjects whose slices, together, are at most this many.
    ValueError in one line for a single image, a subject that is not a volume, or a limit
    below the first subject's slices."""
    path = Path(source)
    stride = bundle.config.level_stride
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path} is one slice, but a 3D run codes whole subjects: give a folder of each "
            "subject's slices named <subject>_slice_<k> (an OASIS set), or a volume"
        )
    sliceset = load_slices(source, size=bundle.config.image_size)
    stacks = subject_stacks(sliceset, stride)
    if limit is not None:
        ends = np.cumsum([len(s.rows) for s in stacks])
        if limit < ends[0]:
            raise ValueError(
                f"--limit {limit} is fewer than subject {stacks[0].subject!r}'s "
                f"{ends[0]} slices: a 3D run reconstructs whole subjects"
            )
        stacks = stacks[: int(np.searchsorted(ends, limit, side="right"))]
    filenames = [str(f) for f in sliceset.filename]
    return sliceset.images, filenames, sliceset.level.tolist(), stacks


def reconstruct_subjects(
    bundle: Bundle, source: str | Path, out_dir: Path, limit: int | None = None
) -> tuple[list[Path], Path]:
    """Reconstruct every subject of the slice folder `source` whole (limit: `subjects_of`).

    Writes one 8-bit PNG per slice under `out_dir`, named after it as a 2D run names it,
    `grid.png` (the first subject's slices above their reconstructions) and `manifest.csv`
    (output, input, level), subject by subject in level order. Returns (files, grid)."""
    images, filenames, levels, stacks = subjects_of(bundle, source, limit)
    out_dir = output_folder(out_dir)
    rows = np.concatenate([s.rows for s in stacks])  # (N,) subject by subject, level order
    names = output_names([filenames[r] for r in rows], [levels[r] for r in rows])
    reader = RowReader(images)
    written, shown, start = [], [], 0
    for stack in stacks:
        volume = reader.read(stack.rows)  # (D, H, W) uint8
        codes = encode_images(bundle.model, volume[None])  # (1, D', h, w)
        recon = decode_codes(bundle.model, codes)[0]  # (D, H, W) uint8
        mine = names[start : start + len(recon)]
        written += [save_png(out_dir / n, img) for n, img in zip(mine, recon, strict=True)]
        start += len(recon)
        if not shown:
            pick = np.unique(np.linspace(0, len(recon) - 1, GRID_SLICES).round().astype(int))
            shown = [volume[pick], recon[pick]]
    grid = save_png(out_dir / GRID, image_grid(np.concatenate(shown), ncols=len(shown[0])))
    manifest = write_manifest(
        out_dir,
        ["output", "input", "level"],
        ([o, filenames[r], levels[r]] for o, r in zip(names, rows, strict=True)),
    )
    return [*written, grid, manifest], grid


def encode_subjects(bundle: Bundle, source: str | Path, codes_path: Path) -> Path:
    """`codes_path`: the code volume of every subject of the slice folder `source`, named
    after its subject, a subject read and encoded at a time."""
    images, _, _, stacks = subjects_of(bundle, source)
    output_folder(codes_path.parent)
    model, s = bundle.model, bundle.config.level_stride
    volumes = [CodeVolume(t.subject, t.first_level // s, len(t.rows) // s) for t in stacks]
    reader = RowReader(images)

    def codes() -> Iterator[np.ndarray]:
        for stack in stacks:
            yield encode_images(model, reader.read(stack.rows)[None])[0]  # (D', h, w)

    return write_code_volumes(codes_path, volumes, codes(), s, bundle.config.latent_size)


def scan_first_level(aligned: AlignedScan) -> int:
    """The first of a scan's covered frame levels, which a 3D run codes as one stack.
    ValueError naming the scan when they are not consecutive."""
    levels = aligned.levels
    if not np.array_equal(levels, np.arange(levels[0], levels[0] + len(levels))):
        missing = sorted(set(range(levels[0], levels[-1] + 1)) - set(levels.tolist()))
        raise ValueError(
            f"{aligned.scan.path}: the run's frame levels {missing} between its covered levels "
            f"{int(levels[0])} and {int(levels[-1])} are not covered, but a 3D run codes a "
            "scan's levels as one volume"
        )
    return int(levels[0])
