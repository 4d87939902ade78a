"""How much of a scan's brain a run judges: its coverage, said with every scan's answer.

A run knows the anatomy it was trained on: the levels of its frame, from one MNI height to
another (OASIS's band is 32 levels around the lateral ventricles, about 40% of a brain; a
whole-brain run's levels reach from the cerebellum to the vertex). A scan is judged on the levels
that are both the run's and inside the scan's field of view (brainvq.data.space.align), and the
maps are carried back to the scan's voxels between them (brainvq.data.space.resample:
`frame_to_scan` gives NaN to a voxel beyond the run's levels or next to a level not covered).

A voxel of the scan's brain mask (on its own voxels, the mask the answers are given inside) is
**judged** when the maps reach it, and **not judged** (NaN in every map, never scored) otherwise.
`Coverage` counts both; the run's frame says which share of the template's brain its levels
hold (brainvq.data.space.run_space.coverage, the figure RUN/space.json records), so that a run
that cannot judge the rest of any brain says so once (`whole_brain_note`), while a whole-brain
run on a cropped scan does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainvq.data.space.align import AlignedScan
from brainvq.data.space.frame import Frame
from brainvq.data.space.run_space import coverage

WHOLE_BRAIN_SHARE = 0.99  # a run whose levels hold this share of the template's brain is whole
WHOLE_BRAIN_CONFIG = "configs/whole_brain.yaml"


@dataclass(frozen=True)
class Coverage:
    """brain_voxels: the scan's brain mask (its own voxels); judged_voxels: those the maps reach;
    run_levels_mm: (low, high) MNI height of the run's first and last level."""

    brain_voxels: int
    judged_voxels: int
    run_levels_mm: tuple[float, float]

    @property
    def share(self) -> float:
        """Judged voxels as a share of the brain's (0 for an empty mask)."""
        return self.judged_voxels / self.brain_voxels if self.brain_voxels else 0.0

    def to_dict(self) -> dict:
        return {
            "brain_voxels": self.brain_voxels,
            "judged_voxels": self.judged_voxels,
            "share": round(self.share, 4),
            "run_levels_mm": [round(v, 1) for v in self.run_levels_mm],
        }

    def line(self) -> str:
        low, high = self.run_levels_mm
        return (
            f"{self.share:.0%} of its brain judged ({self.judged_voxels} of {self.brain_voxels} "
            f"voxels: the run's levels, z {low:.0f} to {high:.0f} mm; the rest is NaN, not scored)"
        )


def run_levels_mm(frame: Frame) -> tuple[float, float]:
    """(low, high) MNI height (mm) of the centre of the frame's first and last level."""
    z = frame.level_z([0, frame.n_levels - 1])
    return float(z[0]), float(z[1])


def judged_voxels(aligned: AlignedScan) -> np.ndarray:
    """(scan shape) bool: the brain-mask voxels that the maps reach. One value per covered level
    (a (L, 1, 1) stack) carries the same level rule back as the maps do: which voxels become NaN
    depends on the levels only, not on the slices' pixels."""
    reach = aligned.to_scan(np.zeros((len(aligned.levels), 1, 1), np.float32))
    return np.isfinite(reach) & aligned.mask


def scan_coverage(aligned: AlignedScan) -> Coverage:
    """The coverage of one aligned scan (module docstring)."""
    return Coverage(
        brain_voxels=int(aligned.mask.sum()),
        judged_voxels=int(judged_voxels(aligned).sum()),
        run_levels_mm=run_levels_mm(aligned.frame),
    )


def whole_brain_note(frame: Frame, coverages: list[Coverage]) -> str | None:
    """The note that a whole-brain run would judge the rest, for a run whose levels miss part of
    every brain; None for a whole-brain run (a scan's own field of view is its to say)."""
    share = coverage(frame)["template_brain_share"]
    if share >= WHOLE_BRAIN_SHARE or not coverages:
        return None
    low, high = run_levels_mm(frame)
    judged = sum(c.judged_voxels for c in coverages)
    brain = sum(c.brain_voxels for c in coverages)
    return (
        f"this run's levels (z {low:.0f} to {high:.0f} mm in MNI152) hold {share:.0%} of a whole "
        f"brain: {judged / max(brain, 1):.0%} of the scans' brain voxels were judged, the rest "
        "is NaN and was never scored; a run trained on whole-brain volumes (`brainvq train all "
        f"--data FOLDER --config {WHOLE_BRAIN_CONFIG}`) would judge the rest"
    )
