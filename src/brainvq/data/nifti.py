"""NIfTI volumes (.nii, .nii.gz) as training data: each volume on the reference frame.

Every volume goes the way a scan brought to `brainvq anomaly` goes (brainvq.data.space.align):
registered to MNI152, masked (its own mask when skull-stripped, the atlas's otherwise), its
intensities standardised onto OASIS's training landmarks (the packaged table), and sliced at
every level of the frame that its field of view covers: OASIS's 32 levels by default, or every
level of OASIS's grid (1.03 mm apart) between `z_range_mm` heights. A slice's level is its
frame level, so a model trained on a user's cohort and applied to a new scan from it agree in
geometry. Volumes are split 80/10/10 by a stable hash of their file name, at least one in train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainvq.data.builder import SliceBuilder, SlicePart
from brainvq.data.decode import DecodePlan, collect
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.space.align import align_scan
from brainvq.data.space.frame import Frame, oasis_intensity
from brainvq.data.space.intensity import Landmarks
from brainvq.data.space.run_space import frame_for_source
from brainvq.data.splits import DEFAULT_FRACTIONS, assign_splits

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VOLUMES_FOR_A_POOL = 4  # registering a volume takes seconds: a pool pays from a few on
ALIGNMENT_VERSION = 1  # bump when the way volumes become slices changes (cache keys)


def is_nifti_name(name: str) -> bool:
    """True for .nii and .nii.gz file names (case-insensitive)."""
    return name.lower().endswith(NIFTI_SUFFIXES)


def volume_id(name: str) -> str:
    """A volume's id: its file name without .nii / .nii.gz."""
    lower = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def canonical_landmarks() -> Landmarks:
    """The intensity scale training volumes are standardised to: OASIS's training landmarks."""
    table = oasis_intensity()
    return Landmarks(tuple(table["values"]), float(table["peak"]))


@dataclass(frozen=True)
class VolumeTask:
    """One volume to align: its path, name relative to the source, split and id."""

    path: str
    rel: str
    split: str
    volume: str
    frame: Frame
    size: int
    landmarks: Landmarks


def decode_volume(task: VolumeTask) -> SlicePart:
    """One volume aligned to the frame: the slices of the levels its field of view covers."""
    aligned = align_scan(Path(task.path), task.frame, task.size, task.landmarks)
    counted = [(note, task.rel) for note in aligned.scan.notes]
    if aligned.mask_kind == "atlas":
        counted.append(("a skull: the template's brain mask (atlas) was used", task.rel))
    if aligned.not_covered:
        counted.append(("some levels outside the field of view were left out", task.rel))
    levels = [int(level) for level in aligned.levels]
    k = len(levels)
    return SlicePart(
        aligned.images,
        [task.split] * k,
        [task.volume] * k,
        levels,
        [f"{task.rel}#level{level}" for level in levels],
        counted,
    )


class NiftiSource:
    """NIfTI volumes (`files` relative to `root`, or a single file when `root` is a file)."""

    kind = "nifti"

    def __init__(
        self,
        root: Path,
        files: list[str],
        skipped: list[str],
        n_levels: int = 32,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        z_range_mm: tuple[float, float] | None = None,
    ) -> None:
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        self.root = root
        self.files = sorted(files)
        self.skipped = sorted(skipped)
        self.frame, self.frame_source = frame_for_source(self.kind, n_levels, z_range_mm)
        self.fractions = fractions

    def _path(self, rel: str) -> Path:
        return self.root if self.root.is_file() else self.root / rel

    def fingerprint(self) -> dict:
        """Every volume with its size and mtime, the frame and the alignment's version."""
        files = []
        for rel in self.files:
            st = self._path(rel).stat()
            files.append([rel, st.st_size, st.st_mtime_ns])
        return {
            "root": str(self.root.resolve()),
            "files": files,
            "skipped": self.skipped,
            "frame": self.frame.to_dict(),
            "alignment": ALIGNMENT_VERSION,
            "fractions": list(self.fractions),
        }

    def plan(self, size: int) -> DecodePlan:
        """One task per volume, in split order (train, validate, test), then by name."""
        ids = {rel: volume_id(Path(rel).name) for rel in self.files}
        split_of = assign_splits(list(ids.values()), self.fractions)
        z = self.frame.level_z([0, self.frame.n_levels - 1])
        note = (
            f"volumes registered to MNI152 and sliced on the frame ({self.frame.n_levels} levels, "
            f"z {z[0]:.1f} to {z[1]:.1f} mm); split by volume (80/10/10 by a stable hash)"
        )
        landmarks = canonical_landmarks()
        ordered = sorted(self.files, key=lambda rel: (SPLITS.index(split_of[ids[rel]]), rel))
        tasks = [
            VolumeTask(
                str(self._path(rel)), rel, split_of[ids[rel]], ids[rel], self.frame, size, landmarks
            )
            for rel in ordered
        ]
        return DecodePlan(
            decode=decode_volume,
            tasks=tasks,
            source=str(self.root),
            description="aligning NIfTI volumes",
            notes=(note,),
            counted=tuple(("not a NIfTI volume, skipped", rel) for rel in self.skipped),
            n_levels=self.frame.n_levels,
            pool_from=VOLUMES_FOR_A_POOL,
        )

    def load(self, size: int, show_progress: bool = True, workers: int | None = None) -> SliceSet:
        """Align every volume and take its covered levels, in memory (workers: as
        brainvq.data.decode.collect)."""
        plan = self.plan(size)
        builder = SliceBuilder(size)
        collect(plan, builder, workers, show_progress)
        return builder.build(plan.source, n_levels=plan.n_levels)
