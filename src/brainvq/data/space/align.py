"""A scan on a run's frame: registered, masked, its intensities standardised, sliced.

`align_scan` is the whole way in:

1. the scan as read, whatever its format (brainvq.data.volumes: `ScanRecord.read`);
2. register it to the reference (`registration.register_volume`);
3. its brain mask: the user's, its own (skull-stripped), extracted from the head, or the
   atlas's (`brain_mask.scan_brain_mask`);
4. sample it and its mask at every pixel of the frame's levels; a level is covered when at least
   MIN_COVERAGE of the template's brain on it lies inside the scan's field of view (others are
   listed as not covered and never scored);
5. standardise the brain's intensities onto the run's landmarks (`intensity`); outside the
   mask, the run's training slices' mean intensity at the same distance from the template's
   outline (`paint_outside`: OASIS's rim and dark background), 8-bit: slices that look like the
   run's training slices.

`AlignedScan.to_scan` is the way back: any stack of frame slices, carried to the scan's voxels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainvq.data.space.brain_mask import scan_brain_mask
from brainvq.data.space.frame import Frame
from brainvq.data.space.intensity import (
    ERODE_MM,
    Landmarks,
    landmarks_of,
    peak_landmarks,
    standardise,
    unstandardise,
)
from brainvq.data.space.registration import FOUND_BRAIN_MI, Registration, register_volume
from brainvq.data.space.resample import frame_to_scan, scan_to_frame
from brainvq.data.space.scan import Scan
from brainvq.data.space.template import load_reference

MIN_COVERAGE = 0.9
MIN_BRAIN_PIXELS = 50  # a level with fewer brain pixels (of the scan's mask) is not covered


@dataclass
class AlignedScan:
    """A scan and its slices on a frame.

    scan, registration, mask (scan shape) bool and mask_kind (brain_mask.MASK_KINDS); frame and
    size; levels: (L,) the covered frame levels, ascending; images: (L, size, size) uint8, the
    standardised brain (zero outside the mask); brain: (L, size, size) bool, the mask on the
    frame; not_covered: {level: why} for the frame's other levels; scan_landmarks: the scan's
    own landmarks (standardise maps them onto `landmarks`); notes."""

    scan: Scan
    registration: Registration
    mask: np.ndarray
    mask_kind: str
    frame: Frame
    size: int
    levels: np.ndarray
    images: np.ndarray
    brain: np.ndarray
    not_covered: dict[int, str]
    landmarks: Landmarks
    scan_landmarks: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def z_mm(self) -> np.ndarray:
        """(L,) reference height of each covered level."""
        return self.frame.level_z(self.levels)

    def to_scan(self, stack: np.ndarray, fill: float = np.nan, order: int = 1) -> np.ndarray:
        """(L, size, size) values on the covered levels -> (scan shape) float32 (`fill` where
        not covered)."""
        return frame_to_scan(
            stack,
            self.levels,
            self.frame,
            self.scan.affine,
            self.scan.shape,
            self.registration.to_scan,
            fill=fill,
            order=order,
        )

    def to_scan_units(self, images: np.ndarray) -> np.ndarray:
        """uint8 slices in the training scale -> float32 in the scan's own intensity units."""
        values = np.asarray(images, dtype=np.float32) / 255.0
        return unstandardise(values, self.scan_landmarks, self.landmarks)


@functools.lru_cache(maxsize=8)
def template_depth(frame: Frame, size: int) -> np.ndarray:
    """(n_levels, size, size) float32: each frame pixel's signed distance (mm) from the
    template's brain outline, > 0 outside."""
    reference = load_reference()
    points = frame.points(size, np.arange(frame.n_levels))
    vox = reference.to_voxels(points.reshape(3, -1))
    depth = ndimage.map_coordinates(reference.signed_distance(), vox, order=1, mode="nearest")
    return depth.reshape(points.shape[1:]).astype(np.float32)


def template_on_frame(frame: Frame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(brain (n_levels, size, size) bool, core (same) bool): the template's brain mask on every
    frame level, and the same eroded by intensity.ERODE_MM (where histograms count)."""
    depth = template_depth(frame, size)
    return depth <= 0, depth <= -ERODE_MM


def paint_outside(
    slices: np.ndarray, brain: np.ndarray, depth: np.ndarray, profile: np.ndarray
) -> np.ndarray:
    """Outside the brain mask, the training slices' mean intensity at the same distance from
    the template's outline (`profile`: values at 0, 1, 2... mm outside it; a run trained on
    skull-stripped slices with a rim, as OASIS's are, expects one around every brain).

    slices, depth: (L, S, S) float; brain: (L, S, S) bool. Returns float32 in [0, 1]."""
    if len(profile) == 0:
        return slices.astype(np.float32)
    outside = np.interp(np.clip(depth, 0, None), np.arange(len(profile)), profile, right=0.0)
    return np.where(brain, slices, outside).astype(np.float32)


def align_scan(
    scan: Scan,
    frame: Frame,
    size: int,
    landmarks: Landmarks,
    *,
    user_mask: str | Path | None = None,
    intensity: str = "landmarks",
    outside_profile: tuple[float, ...] = (),
    threads: int | None = None,
) -> AlignedScan:
    """Steps 2-5 of the module docstring for a scan as read. ValueError naming its file for an
    unusable scan, or one whose brain lies on none of the frame's levels."""
    try:
        registration = register_volume(scan.data, scan.affine, threads=threads)
    except ValueError as e:
        raise ValueError(f"{scan.path}: cannot register it to the reference ({e})") from None
    if not registration.found_brain:
        raise ValueError(
            f"{scan.path}: registration to MNI152 found no brain (best mutual information "
            f"{registration.metric:.2f}, expected below {FOUND_BRAIN_MI}; tried "
            f"{'; '.join(registration.tried)}); expected a T1 brain volume"
        )
    notes = list(scan.notes)
    scales = np.round(registration.scales, 2).tolist()
    notes.append(
        f"registered to MNI152 in {registration.seconds:.1f} s (12-parameter affine, mutual "
        f"information {registration.metric:.2f}; scales {scales})"
    )
    mask, kind, mask_note = scan_brain_mask(scan, registration, user_mask)
    notes.append(mask_note)
    all_levels = np.arange(frame.n_levels)
    values, inside = scan_to_frame(
        scan.data, scan.affine, registration.to_scan, frame, size, all_levels
    )
    brain, _ = scan_to_frame(
        mask.astype(np.float32),
        scan.affine,
        registration.to_scan,
        frame,
        size,
        all_levels,
        antialias=False,
    )
    brain = ndimage.binary_fill_holes(brain >= 0.5, structure=np.ones((1, 3, 3))) & inside
    template_brain, core = template_on_frame(frame, size)
    not_covered: dict[int, str] = {}
    covered = []
    for k in all_levels:
        share = float(inside[k][template_brain[k]].mean()) if template_brain[k].any() else 0.0
        if share < MIN_COVERAGE:
            not_covered[int(k)] = f"{share:.0%} of the level inside the scan's field of view"
        elif brain[k].sum() < MIN_BRAIN_PIXELS:
            not_covered[int(k)] = "no brain in the scan's mask on this level"
        else:
            covered.append(int(k))
    if not covered:
        raise ValueError(
            f"{scan.path}: none of the run's {frame.n_levels} levels (z {frame.level_z([0])[0]:.0f}"
            f" to {frame.level_z([frame.n_levels - 1])[0]:.0f} mm in MNI152) lies inside the "
            "scan's field of view with brain on it; expected a brain scan covering them"
        )
    levels = np.asarray(covered)
    region = brain[levels] & core[levels]
    if region.sum() < 100:
        region = brain[levels]
    sample = values[levels][region]
    if intensity == "landmarks":
        own = landmarks_of(sample)
    elif intensity == "white_matter_peak":
        own = peak_landmarks(sample, landmarks)
    else:
        raise ValueError(
            f"intensity: expected 'landmarks' or 'white_matter_peak', got {intensity!r}"
        )
    slices = standardise(values[levels], own, landmarks) * brain[levels]
    depth = template_depth(frame, size)[levels]
    slices = paint_outside(slices, brain[levels], depth, np.asarray(outside_profile))
    images = np.round(slices * 255).astype(np.uint8)
    if not_covered:
        notes.append(
            f"{len(not_covered)} of the run's {frame.n_levels} levels not covered by the scan "
            "(listed in the summary; NaN in the maps)"
        )
    return AlignedScan(
        scan=scan,
        registration=registration,
        mask=mask,
        mask_kind=kind,
        frame=frame,
        size=size,
        levels=levels,
        images=images,
        brain=brain[levels],
        not_covered=not_covered,
        landmarks=landmarks,
        scan_landmarks=own,
        notes=notes,
    )
