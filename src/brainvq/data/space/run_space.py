"""What a run knows of the reference space: its frame and its training data's intensities.

Saved as RUN/space.json (brainvq.run.RunLayout.space). The frame depends on the kind of source
(`frame_for_source`): measured for OASIS, by construction for the demo cohort, by registration for
NIfTI volumes, and assumed for PNG slices of unknown geometry (OASIS's band; said so in
`frame_source`). Volumes and the demo cohort may instead cover any range of heights on OASIS's
grid (`z_range_mm`, `spanning_frame`: e.g. the whole brain, configs/whole_brain.yaml), as long as
the range lies in the template and holds some of its brain. The landmarks are learned from the
run's training slices on the frame (brainvq.data.space.intensity).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from brainvq.data.space.align import template_depth, template_on_frame
from brainvq.data.space.frame import BASE_SIZE, Frame, oasis_frame
from brainvq.data.space.intensity import Landmarks, learn_landmarks
from brainvq.data.space.template import load_reference

REFERENCE = "MNI152 2009 T1 template and brain mask, 1 mm (nilearn)"
FRAME_SOURCES = {
    "oasis": "measured: OASIS-1's 32 levels registered to MNI152 (measure_oasis_frame.py)",
    "demo": "by construction: the demo cohort is rendered on OASIS's grid",
    "nifti": "by registration: every volume registered to MNI152 and sliced on OASIS's grid",
    "images": "assumed: PNG/JPEG slices of unknown geometry, taken to lie on OASIS's band",
}
RANGED_KINDS = ("nifti", "demo")  # the kinds sliced at any heights (z_range_mm)


@dataclass(frozen=True)
class RunSpace:
    """frame: the run's slice grid; frame_source: how it is known (FRAME_SOURCES); landmarks:
    the run's training intensities on it; outside_profile: the training slices' mean intensity
    at 0, 1, 2... mm outside the template's brain outline (align.paint_outside)."""

    frame: Frame
    frame_source: str
    landmarks: Landmarks
    outside_profile: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": REFERENCE,
            "frame": self.frame.to_dict(),
            "frame_source": self.frame_source,
            "intensity_landmarks": {
                "values": list(self.landmarks.values),
                "peak": self.landmarks.peak,
            },
            "outside_profile": [round(v, 5) for v in self.outside_profile],
            "coverage": coverage(self.frame),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunSpace:
        for key in ("frame", "frame_source", "intensity_landmarks"):
            if key not in doc:
                raise ValueError(f"space: missing key {key!r}")
        lm = doc["intensity_landmarks"]
        return cls(
            Frame.from_dict(doc["frame"]),
            str(doc["frame_source"]),
            Landmarks(tuple(float(v) for v in lm["values"]), float(lm["peak"])),
            tuple(float(v) for v in doc.get("outside_profile", [])),
        )


def frame_for_source(
    kind: str, n_levels: int, z_range_mm: tuple[float, float] | None = None
) -> tuple[Frame, str]:
    """(frame, how it is known) for a source kind ("demo", "oasis", "nifti", "images")."""
    if kind not in FRAME_SOURCES:
        raise ValueError(f"source kind: expected one of {sorted(FRAME_SOURCES)}, got {kind!r}")
    if z_range_mm is None:
        return oasis_frame().resampled(max(n_levels, 1)), FRAME_SOURCES[kind]
    if kind not in RANGED_KINDS:
        raise ValueError(
            f"z_range_mm {list(z_range_mm)}: a {kind} source's slices lie on OASIS's band; only "
            "volumes and the demo cohort are sliced at chosen heights (set it to null)"
        )
    return spanning_frame(z_range_mm), FRAME_SOURCES[kind]


def spanning_frame(z_range_mm: tuple[float, float]) -> Frame:
    """OASIS's grid over every level whose centre lies in [low, high] MNI mm; ValueError when
    the range leaves the template's field of view (no anatomy to render or to register to
    there) or holds none of its brain."""
    low, high = (float(v) for v in z_range_mm)
    reference = load_reference()
    fov, brain = reference.z_extent_mm(), reference.brain_z_extent_mm()
    if low < fov[0] or high > fov[1]:
        raise ValueError(
            f"z_range_mm [{low:g}, {high:g}]: outside the MNI152 template, which spans z "
            f"{fov[0]:g} to {fov[1]:g} mm (its brain {brain[0]:g} to {brain[1]:g} mm)"
        )
    if high < brain[0] or low > brain[1]:
        raise ValueError(
            f"z_range_mm [{low:g}, {high:g}]: no brain there; the template's brain spans z "
            f"{brain[0]:g} to {brain[1]:g} mm"
        )
    return oasis_frame().spanning(low, high)


@functools.lru_cache(maxsize=4)
def coverage(frame: Frame) -> dict[str, Any]:
    """What of the brain a frame's levels hold: their heights (MNI z of the lowest and highest
    level's centre, mm) and the share of the template's brain (counted on a 2 mm grid) that lies
    within half a level of one of them (OASIS's band: 35%; configs/whole_brain.yaml: all)."""
    reference = load_reference()
    voxels = 2.0 * np.stack(np.nonzero(reference.mask[::2, ::2, ::2]))  # (3, V) voxel indices
    mm = reference.affine[:3, :3] @ voxels + reference.affine[:3, 3:4]  # (3, V) MNI mm
    level = frame.to_grid(mm, BASE_SIZE)[2]  # (V,) continuous frame level
    inside = (level >= -0.5) & (level <= frame.n_levels - 0.5)
    z = frame.level_z([0, frame.n_levels - 1])
    return {
        "levels": frame.n_levels,
        "z_mm": [round(float(z[0]), 2), round(float(z[1]), 2)],
        "template_brain_share": round(float(inside.mean()), 4),
    }


def learn_run_landmarks(
    images: np.ndarray, levels: np.ndarray, subjects: np.ndarray, frame: Frame
) -> Landmarks:
    """The training slices' landmarks: images (N, H, W) uint8 at frame levels (N,) (-1 unknown:
    the middle of the band), histograms over the template's eroded brain on each level."""
    size = images.shape[-1]
    _, core = template_on_frame(frame, size)
    k = np.where(levels >= 0, levels, frame.n_levels // 2).clip(0, frame.n_levels - 1)
    return learn_landmarks(images, core[k], subjects)


OUTSIDE_MM = 24  # how far out the profile is measured (mm)


def learn_outside_profile(
    images: np.ndarray, levels: np.ndarray, frame: Frame
) -> tuple[float, ...]:
    """The training slices' mean intensity (in [0, 1]) at 0, 1, ... OUTSIDE_MM mm outside the
    template's brain outline on their level; images (N, H, W) uint8, levels (N,) (-1: middle)."""
    size = images.shape[-1]
    depth = template_depth(frame, size)
    k = np.where(levels >= 0, levels, frame.n_levels // 2).clip(0, frame.n_levels - 1)
    d = depth[k]  # (N, H, W)
    bins = np.floor(d[d >= 0] + 0.5).astype(int)
    values = images[d >= 0].astype(np.float64) / 255.0
    keep = bins <= OUTSIDE_MM
    sums = np.bincount(bins[keep], weights=values[keep], minlength=OUTSIDE_MM + 1)
    counts = np.bincount(bins[keep], minlength=OUTSIDE_MM + 1)
    return tuple(float(v) for v in sums / np.maximum(counts, 1))
