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

from pathlib import Path

from brainvq.data.builder import SliceBuilder
from brainvq.data.progress import progress
from brainvq.data.sliceset import SliceSet
from brainvq.data.space.align import align_scan
from brainvq.data.space.frame import oasis_intensity
from brainvq.data.space.intensity import Landmarks
from brainvq.data.space.run_space import frame_for_source
from brainvq.data.splits import DEFAULT_FRACTIONS, assign_splits

NIFTI_SUFFIXES = (".nii", ".nii.gz")
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

    def load(self, size: int, show_progress: bool = True) -> SliceSet:
        """Align every volume and take its covered levels."""
        builder = SliceBuilder(size)
        for rel in self.skipped:
            builder.count("not a NIfTI volume, skipped", rel)
        ids = {rel: volume_id(Path(rel).name) for rel in self.files}
        split_of = assign_splits(list(ids.values()), self.fractions)
        z = self.frame.level_z([0, self.frame.n_levels - 1])
        builder.note(
            f"volumes registered to MNI152 and sliced on the frame ({self.frame.n_levels} levels, "
            f"z {z[0]:.1f} to {z[1]:.1f} mm); split by volume (80/10/10 by a stable hash)"
        )
        landmarks = canonical_landmarks()
        for rel in progress(self.files, len(self.files), "aligning NIfTI volumes", show_progress):
            aligned = align_scan(self._path(rel), self.frame, size, landmarks)
            for note in aligned.scan.notes:
                builder.count(note, rel)
            if aligned.mask_kind == "atlas":
                builder.count("a skull: the template's brain mask (atlas) was used", rel)
            if aligned.not_covered:
                builder.count("some levels outside the field of view were left out", rel)
            for image, level in zip(aligned.images, aligned.levels, strict=True):
                builder.add(image, split_of[ids[rel]], ids[rel], int(level), f"{rel}#level{level}")
        return builder.build(str(self.root), n_levels=self.frame.n_levels)
