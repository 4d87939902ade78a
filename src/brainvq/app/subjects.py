"""Synthetic subjects: `brainvq sample --subjects N`, whole brains drawn slice by slice, bottom to
top, by a prior that knows the slice below (brainvq.inference.subjects), written as volumes.

    DIR/subject_000.nii.gz        (H, W, L) uint8 on the run's frame: the affine maps (row,
                                  column, level) to MNI152 millimetres (sform/qform code 4;
                                  2, "aligned", where the run's frame is only assumed)
    DIR/subject_000_montage.png   its L slices, bottom to top, labelled with their levels
    DIR/subject_000_views.png     three orthogonal views through its centre, top to bottom:
                                  axial, coronal, sagittal; the level axis at its true spacing,
                                  everything enlarged VIEW_ZOOM times
    DIR/subjects.json             the run, seed, sampler, levels, the affine and where it is from
    DIR/manifest.csv              output, subject, kind, seed

The frame is the run's (brainvq.app.run_data.run_frame: RUN/space.json, else its source's kind;
no slice is loaded for it). A run without one (no RUN/space.json and a source that is gone)
still gets its volumes, with a voxel-index affine (code 0), and says so in subjects.json and on
the terminal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainvq.app.run_data import run_frame
from brainvq.app.writers import PNG_OVERHEAD, write_manifest
from brainvq.atomic import atomic_path, atomic_write_bytes, atomic_write_json, output_folder
from brainvq.data.nifti_codes import XFORM_ALIGNED, XFORM_MNI152, XFORM_UNKNOWN, nifti_gz_bytes
from brainvq.data.sliceset import SliceSet
from brainvq.evaluation.consistency import subject_volumes
from brainvq.evaluation.prior import complete_subject_rows
from brainvq.inference.generate import generate_subjects, iter_subjects, subject_slice_levels
from brainvq.inference.run_models import RunModels, load_run_models
from brainvq.inference.sampling_options import DEFAULT_OPTIONS, SamplingOptions
from brainvq.inference.subjects import SUBJECT_SAMPLER, check_subject_prior
from brainvq.io.images import image_grid, save_png
from brainvq.run import RunLayout
from brainvq.run_config import SampleConfig
from brainvq.values import COUNT, INDEX, check_disk

VIEW_ZOOM = 2  # the orthogonal views are enlarged this many times
MONTAGE_COLUMNS = 8
KINDS = ("volume", "montage", "views")  # the files of one subject, in the manifest
NIFTI_HEADER = 352  # bytes of a NIfTI-1 header and its extension flag


@dataclass(frozen=True)
class SubjectSpace:
    """Where a subject's voxels lie: affine (4, 4) (row, column, level) -> mm; code: the NIfTI
    xform code; source: how the run knows it; stretch: level spacing / pixel size (the views'
    aspect)."""

    affine: np.ndarray
    code: int
    source: str
    stretch: float


def subject_space(run_dir: str | Path, size: int, first_level: int) -> SubjectSpace:
    """The run's frame at `size`, shifted to start at first_level (brainvq.app.run_data.run_frame:
    RUN/space.json, else the frame of its source's kind); a voxel-index space when it has none."""
    try:
        frame, frame_source = run_frame(run_dir)
    except (OSError, ValueError) as e:
        return SubjectSpace(np.eye(4), XFORM_UNKNOWN, f"none: no reference frame ({e})", 1.0)
    affine = frame.affine_at(size)
    affine[:3, 3] += first_level * affine[:3, 2]  # voxel level 0 is frame level first_level
    code = XFORM_ALIGNED if frame_source.startswith("assumed") else XFORM_MNI152
    stretch = frame.level_spacing_mm / float(np.mean(frame.pixel_mm(size)))
    return SubjectSpace(affine, code, frame_source, stretch)


def subject_nifti(volume: np.ndarray, space: SubjectSpace, description: str) -> bytes:
    """volume: (L, H, W) uint8 slices bottom to top -> gzipped NIfTI bytes, (H, W, L) with the
    space's affine (the file is the same for the same volume: no time stamp)."""
    data = np.ascontiguousarray(np.asarray(volume, dtype=np.uint8).transpose(1, 2, 0))
    return nifti_gz_bytes(data, space.affine, description, space.code)


def orthogonal_views(volume: np.ndarray, stretch: float, zoom: int = VIEW_ZOOM) -> np.ndarray:
    """volume: (L, H, W) uint8 slices bottom to top -> one uint8 image: the middle axial slice,
    then the coronal (through the middle column: rows run left-right, brainvq.data.planes) and
    sagittal (through the middle row) planes with the highest level on top, the level axis
    scaled by `stretch` (its spacing in pixels), all enlarged `zoom` times and centred in one
    column, 2 black pixels apart."""
    vol = np.asarray(volume, dtype=np.float32)
    n, h, w = vol.shape
    axial = vol[n // 2]  # (H, W)
    coronal = vol[::-1, :, w // 2]  # (L, H), top level first
    sagittal = vol[::-1, h // 2, :]  # (L, W)
    views = [ndimage.zoom(axial, zoom, order=1)]
    views += [ndimage.zoom(v, (stretch * zoom, zoom), order=1) for v in (coronal, sagittal)]
    width = max(v.shape[1] for v in views)
    rows = []
    for v in views:
        left = (width - v.shape[1]) // 2
        rows.append(np.pad(v, ((2, 0), (left, width - v.shape[1] - left))))
    panel = np.concatenate(rows)
    return np.clip(np.round(panel), 0, 255).astype(np.uint8)


def _write_subject(
    out: Path, i: int, volume: np.ndarray, levels: np.ndarray, space: SubjectSpace, seed: object
) -> tuple[list[Path], list[list]]:
    """Subject i's volume, montage and views in `out`: (the files, their manifest rows)."""
    stem = f"subject_{i:03d}"
    what = f"brainvq synthetic subject {i}, seed {seed}"
    written = [atomic_write_bytes(out / f"{stem}.nii.gz", subject_nifti(volume, space, what))]
    labels = [f"level {k}" for k in levels] if levels[0] >= 0 else None
    montage = image_grid(volume, ncols=min(MONTAGE_COLUMNS, len(volume)), labels=labels)
    written.append(save_png(out / f"{stem}_montage.png", montage))
    written.append(save_png(out / f"{stem}_views.png", orthogonal_views(volume, space.stretch)))
    return written, [[p.name, i, kind, seed] for p, kind in zip(written, KINDS, strict=True)]


def subject_bytes(levels: np.ndarray, size: int, stretch: float) -> int:
    """The most one subject's files take: its volume, montage and views (the level axis
    stretched `stretch` times) stored uncompressed (8-bit, a filter byte per PNG row,
    PNG_OVERHEAD each), sized on a blank subject."""
    blank = np.zeros((len(levels), size, size), dtype=np.uint8)
    labels = [f"level {k}" for k in levels] if levels[0] >= 0 else None
    panels = [image_grid(blank, ncols=min(MONTAGE_COLUMNS, len(blank)), labels=labels)]
    panels.append(orthogonal_views(blank, stretch))
    pngs = sum(p.shape[0] * (p.shape[1] + 1) + PNG_OVERHEAD for p in panels)
    return blank.size + NIFTI_HEADER + pngs


def _finish(out: Path, run_dir, n: int, levels, space: SubjectSpace, rows, drawn_with) -> list:
    """subjects.json and manifest.csv of the n subjects written to `out`."""
    record = {
        "run": str(Path(run_dir).resolve()),
        "subjects": n,
        **drawn_with,
        "levels": [int(k) for k in levels],
        "affine": np.round(space.affine, 6).tolist(),
        "xform_code": space.code,
        "frame_source": space.source,
    }
    return [
        atomic_write_json(out / "subjects.json", record),
        write_manifest(out, ["output", "subject", "kind", "seed"], rows),
    ]


def drawn_with(options: SamplingOptions) -> dict[str, object]:
    """How subjects were drawn, as subjects.json records it: the options, with the sampler that
    drew them (the subject sampler's default where they name none)."""
    return {**asdict(options), "sampler": options.sampler or SUBJECT_SAMPLER}


def write_subjects(
    run_dir: str | Path,
    out_dir: str | Path,
    images: np.ndarray,
    levels: np.ndarray,
    first_level: int = 0,
    **drawn_with: object,
) -> tuple[list[Path], SubjectSpace]:
    """Write subjects images (n, L, H, W) uint8 at levels (L,) (-1: a prior without levels) to
    out_dir as the module docstring says; drawn_with (seed, sampler, ...) goes to subjects.json.
    Returns (the files written, the space they were written in)."""
    out = output_folder(out_dir, "out")
    images = np.asarray(images)
    space = subject_space(run_dir, images.shape[-1], first_level)
    written, rows = [], []
    for i, volume in enumerate(images):
        files, manifest = _write_subject(out, i, volume, levels, space, drawn_with.get("seed", ""))
        written += files
        rows += manifest
    written += _finish(out, run_dir, len(images), levels, space, rows, drawn_with)
    return written, space


def subjects_to_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    n: int,
    *,
    first_level: int = 0,
    n_slices: int | None = None,
    options: SamplingOptions = DEFAULT_OPTIONS,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[list[Path], SubjectSpace]:
    """Draw n subjects with the run's prior, as `options` says, and write them to out_dir
    (`write_subjects`; subjects.json records the options, with the sampler that drew them).
    ValueError before anything is drawn or written for a count < 1 or a prior without the
    neighbour. Returns (the files written, the space they were written in)."""
    COUNT.check("--subjects", n)
    INDEX.check("--first-level", first_level)
    models = load_run_models(run_dir)
    check_subject_prior(models.prior.model)
    out = output_folder(out_dir, "--out")
    size = models.vqvae.config.image_size
    levels = subject_slice_levels(models, first_level, n_slices)
    what = "one subject's volume, montage and views"
    check_disk("--subjects", n, subject_bytes(levels, size, 1.0), out, what)  # before any work
    space = subject_space(run_dir, size, first_level)
    check_disk("--subjects", n, subject_bytes(levels, size, space.stretch), out, what)
    written, rows = [], []
    draws = iter_subjects(
        models,
        n,
        first_level=first_level,
        n_slices=n_slices,
        options=options,
        progress=progress,
        threads=threads,
    )
    for start, _, images, _ in draws:  # a chunk of subjects at a time, written as drawn
        for i, volume in enumerate(images, start):
            files, manifest = _write_subject(out, i, volume, levels, space, options.seed)
            written += files
            rows += manifest
    written += _finish(out, run_dir, n, levels, space, rows, drawn_with(options))
    return written, space


REPORT_SUBJECTS = 2  # generated subjects the report shows


def write_run_subjects(
    run_dir: str | Path, part: SliceSet, models: RunModels, config: SampleConfig
) -> Path | None:
    """RUN/samples/subjects.npz for the report: the first REPORT_SUBJECTS of the volumes the
    evaluation generated (RUN/samples/generated.npz `subjects`: whole subjects for a prior with
    the neighbour, else stacks of independent slices, one per level), or, when it generated
    none (no generation metrics) and the prior draws whole subjects, REPORT_SUBJECTS drawn here
    with the report's sampling settings (`config`); a real subject of `part` (the evaluation
    split) and the frame's level spacing in pixels. None (nothing written) when there is no
    real subject with every level or nothing was generated."""
    layout = RunLayout(run_dir)
    n_levels = models.n_levels
    neighbour = models.prior.config.has_neighbour
    volumes = np.zeros((0, n_levels, part.size, part.size), dtype=np.uint8)
    if layout.generated.is_file():
        with np.load(layout.generated, allow_pickle=False) as f:
            if "subjects" in f.files:
                volumes = f["subjects"][:REPORT_SUBJECTS]
    elif neighbour:
        options = SamplingOptions(
            temperature=config.temperature, top_k=config.top_k, seed=config.seed
        )
        volumes = generate_subjects(models, REPORT_SUBJECTS, options=options, progress=False)[1]
    rows = complete_subject_rows(part.subject, part.level, n_levels, most=n_levels)  # one
    real = subject_volumes(part.images[rows], part.subject[rows], part.level[rows], n_levels)
    if not len(real) or not len(volumes):
        return None
    space = subject_space(run_dir, part.size, 0)
    with atomic_path(layout.subjects) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            generated=volumes,
            real=real[0],
            stretch=np.float64(space.stretch),
            neighbour=np.bool_(neighbour),
        )
    return layout.subjects
