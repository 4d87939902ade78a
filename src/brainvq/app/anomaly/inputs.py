"""What `brainvq anomaly` scores: the input's slices at the run's working size, and their levels.

Volumes (NIfTI, MGZ, NRRD/MHA, DICOM series, BIDS trees: brainvq.data.volumes) are aligned to
the run's frame (brainvq.app.scans) and give every covered level, with its level and brain mask
known; 2D inputs give their slices, with levels from their names, `--level` or the run's level
classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.app.scans import align_inputs, input_scans, levels_covered, slice_names
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.data.slice_names import level_from_name
from brainvq.data.space.align import AlignedScan
from brainvq.inference.generate import check_level
from brainvq.inference.levels import predict_levels
from brainvq.inference.run_models import RunModels
from brainvq.io.bundle import load_level_classifier
from brainvq.run import RunLayout, load_run

# where a slice's level came from: its name, its height in a registered volume ("frame"), the
# --level flag, the run's level classifier, or nowhere (an unconditional prior)
LEVEL_FROM = ("input", "frame", "--level", "classifier", "none")


@dataclass(frozen=True)
class Inputs:
    """The slices to score: images (N, H, W) uint8 at the working size; names (N,) their input
    names (volume slices: "<volume>#level<k>"); levels (N,) int64, -1 when the input does not
    say; root: the input path; volumes: the aligned scans of volume inputs ([] for 2D inputs)
    and volume_of: (N,) int64, each slice's index into them (-1 for 2D inputs); foreground:
    (N, H, W) bool brain masks when known (volumes), else None; notes: what finding the scans
    said (files left out, the DICOM series chosen is in each scan's own notes)."""

    images: np.ndarray
    names: list[str]
    levels: np.ndarray
    root: Path
    volumes: list[AlignedScan] = field(default_factory=list)
    volume_of: np.ndarray | None = None
    foreground: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def level_origin(self) -> str:
        return "frame" if self.volumes else "input"

    def subset(self, rows: np.ndarray) -> Inputs:
        """The slices at `rows` (int indices); volumes kept, volume_of and foreground cut."""
        return Inputs(
            self.images[rows],
            [self.names[i] for i in rows],
            self.levels[rows],
            self.root,
            self.volumes,
            None if self.volume_of is None else self.volume_of[rows],
            None if self.foreground is None else self.foreground[rows],
            self.notes,
        )


def refuse_slices(source: str | Path, verb: str) -> str:
    """The one line a 3D run answers 2D input with: what it `verb`s instead."""
    return (
        f"{source} holds slices, but a 3D run {verb} whole scans, each coded as a volume: give "
        "volumes (NIfTI, MGZ, NRRD/MHA, a DICOM series, a BIDS tree, or a folder of them)"
    )


def load_inputs(
    run_dir: str | Path,
    source: str | Path,
    *,
    mask: str | Path | None = None,
    intensity: str = "landmarks",
    threads: int | None = None,
    progress: bool = True,
    series: str | None = None,
    volumes_only: bool = False,
) -> Inputs:
    """Volumes (a file, a folder of them, a DICOM series or DICOMDIR, a BIDS tree; series: the
    DICOM series to take, `--series`): aligned to the run's frame, every covered level
    (brainvq.app.scans); a single PNG/JPEG (its level read from its name as a folder's would be); or
    anything load_slices reads (every slice of every split, in the loader's order).
    volumes_only: anything but volumes is refused in one line (`refuse_slices`: a 3D run)."""
    path = Path(source)
    config = load_run(run_dir)
    size, n_levels = config.data.size, config.data.n_levels
    cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else None
    found = input_scans(path, series)
    if found is None and volumes_only:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder (expected volumes)")
        raise ValueError(refuse_slices(path, "judges"))
    if found is not None:
        aligned = align_inputs(
            run_dir, found.scans, mask=mask, intensity=intensity, threads=threads, progress=progress
        )
        return Inputs(
            images=np.concatenate([a.images for a in aligned]),
            names=[n for a in aligned for n in slice_names(a, path)],
            levels=levels_covered(aligned),
            root=path,
            volumes=aligned,
            volume_of=np.concatenate([np.full(len(a.levels), i) for i, a in enumerate(aligned)]),
            foreground=np.concatenate([a.brain for a in aligned]),
            notes=tuple(found.notes),
        )
    if mask is not None:
        raise ValueError(f"--mask {mask}: a brain mask goes with a volume input, not {path}")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        image = prepare_slice(path.read_bytes(), str(path), size)[0]  # (H, W)
        level = level_from_name(path)
        return Inputs(image[None], [path.name], np.array([-1 if level is None else level]), path)
    sliceset = load_slices(source, size=size, n_levels=n_levels, cache_dir=cache_dir)
    return Inputs(
        sliceset.images,
        [str(f) for f in sliceset.filename],
        sliceset.level.astype(np.int64),
        path,
    )


def resolve_levels(
    models: RunModels, layout: RunLayout, inputs: Inputs, level: int | None
) -> tuple[np.ndarray | None, list[str], list[str]]:
    """Each slice's conditioning level: the input's own (OASIS name, NIfTI position), else
    `level`, else the run's level classifier. Returns (levels (N,) int64 or None for an
    unconditional prior, where each came from (LEVEL_FROM), notes)."""
    n = len(inputs.images)
    if models.n_levels == 0:
        check_level(models, level)  # refuses a --level
        return None, ["none"] * n, []
    if level is not None:
        check_level(models, level)
    known = inputs.levels >= 0
    wrong = np.nonzero(known & (inputs.levels >= models.n_levels))[0]
    if len(wrong):
        i = int(wrong[0])
        raise ValueError(
            f"{inputs.names[i]}: its name or position says level {int(inputs.levels[i])}, but "
            f"this run's prior knows levels 0-{models.n_levels - 1}; rename the input"
        )
    levels = inputs.levels.copy()
    origin = np.where(known, inputs.level_origin, "--level" if level is not None else "classifier")
    notes = []
    if level is not None and known.all():
        notes.append(f"--level {level} not used: every slice's name or position gives its level")
    if not known.all():
        unknown = int((~known).sum())
        if level is not None:
            levels[~known] = level
            notes.append(f"{unknown} of {n} slices have no level in their name: --level {level}")
        else:
            classifier = load_level_classifier(layout.level_classifier).model
            levels[~known] = predict_levels(classifier, inputs.images[~known])
            notes.append(
                f"{unknown} of {n} slices have no level in their name: levels predicted by the "
                f"run's level classifier ({layout.level_classifier}); give --level K to set them"
            )
    return levels, [str(o) for o in origin], notes
