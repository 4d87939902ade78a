"""Volumes as training data: each scan on the reference frame, whatever its format.

A source of volumes is anything brainvq.data.volumes finds scans in: NIfTI files (the name of
this module, and of the source kind `nifti`, from when they were the only ones), MGZ, NRRD/MHA,
DICOM series (one per study) and BIDS trees (their T1w images), in one folder or a single file.
Every scan goes the way a scan brought to `brainvq anomaly` goes (brainvq.data.space.align):
registered to MNI152, masked (its own mask when skull-stripped, the atlas's otherwise), its
intensities standardised onto OASIS's training landmarks (the packaged table), and sliced at
every level of the frame that its field of view covers: OASIS's 32 levels by default, or every
level of OASIS's grid (1.03 mm apart) between `z_range_mm` heights. A slice's level is its
frame level, so a model trained on a user's cohort and applied to a new scan from it agree in
geometry. Scans are split 80/10/10 by a stable hash of their group (a BIDS subject, whose
sessions stay together; else the scan's name), at least one in train.
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
from brainvq.data.volumes.discovery import ScanRecord

VOLUMES_FOR_A_POOL = 4  # registering a volume takes seconds: a pool pays from a few on
ALIGNMENT_VERSION = 2  # bump when the way volumes become slices changes (cache keys)


def canonical_landmarks() -> Landmarks:
    """The intensity scale training volumes are standardised to: OASIS's training landmarks."""
    table = oasis_intensity()
    return Landmarks(tuple(table["values"]), float(table["peak"]))


@dataclass(frozen=True)
class VolumeTask:
    """One scan to align: its record, split, frame, size and landmarks."""

    record: ScanRecord
    split: str
    frame: Frame
    size: int
    landmarks: Landmarks


def decode_volume(task: VolumeTask) -> SlicePart:
    """One scan aligned to the frame: the slices of the levels its field of view covers."""
    record = task.record
    aligned = align_scan(record.read(), task.frame, task.size, task.landmarks)
    counted = [(note, record.rel) for note in aligned.scan.notes]
    if aligned.mask_kind == "extracted":
        counted.append(("a skull: the brain was extracted from the head", record.rel))
    elif aligned.mask_kind == "atlas":
        counted.append(("a skull: the template's brain mask (atlas) was used", record.rel))
    if aligned.not_covered:
        counted.append(("some levels outside the field of view were left out", record.rel))
    levels = [int(level) for level in aligned.levels]
    k = len(levels)
    return SlicePart(
        aligned.images,
        [task.split] * k,
        [record.name] * k,
        levels,
        [f"{record.rel}#level{level}" for level in levels],
        counted,
    )


class NiftiSource:
    """Volumes: the scans of `root` (brainvq.data.volumes.find_scans) as ScanRecords; skipped:
    the files that are not scans (relative); notes: what finding them said."""

    kind = "nifti"

    def __init__(
        self,
        root: Path,
        scans: list[ScanRecord],
        skipped: list[str],
        n_levels: int = 32,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        z_range_mm: tuple[float, float] | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        self.root = root
        self.scans = sorted(scans, key=lambda s: s.rel)
        self.skipped = sorted(skipped)
        self.frame, self.frame_source = frame_for_source(self.kind, n_levels, z_range_mm)
        self.fractions = fractions
        self.notes = notes

    def fingerprint(self) -> dict:
        """Every scan's files with their sizes and mtimes, the frame and the alignment's
        version."""
        return {
            "root": str(self.root.resolve()),
            "files": [record.fingerprint() for record in self.scans],
            "skipped": self.skipped,
            "frame": self.frame.to_dict(),
            "alignment": ALIGNMENT_VERSION,
            "fractions": list(self.fractions),
        }

    def plan(self, size: int) -> DecodePlan:
        """One task per scan, in split order (train, validate, test), then by name."""
        split_of = assign_splits([record.group for record in self.scans], self.fractions)
        z = self.frame.level_z([0, self.frame.n_levels - 1])
        note = (
            f"volumes registered to MNI152 and sliced on the frame ({self.frame.n_levels} levels, "
            f"z {z[0]:.1f} to {z[1]:.1f} mm); split by volume (80/10/10 by a stable hash)"
        )
        landmarks = canonical_landmarks()
        ordered = sorted(
            self.scans, key=lambda record: (SPLITS.index(split_of[record.group]), record.rel)
        )
        tasks = [
            VolumeTask(record, split_of[record.group], self.frame, size, landmarks)
            for record in ordered
        ]
        return DecodePlan(
            decode=decode_volume,
            tasks=tasks,
            source=str(self.root),
            description="aligning volumes",
            notes=(note, *self.notes),
            counted=tuple(("not a volume, skipped", rel) for rel in self.skipped),
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
