"""A scan's brain mask: which one its answers are given inside, and the brain of a head.

`scan_brain_mask` decides:
- `--mask MASK`: the user's own, which must have the scan's shape and affine ("user");
- a skull-stripped scan (the shell 8-20 mm outside the registered template brain is dark:
  its mean is below STRIPPED_SHELL_RATIO of the brain's median) keeps its own mask: its
  foreground there, holes filled ("own");
- a head with a skull (and a neck...): its brain extracted (`extract_brain`, below;
  "extracted"), or where the extraction's check refuses its result, the template's brain mask
  carried by the registration ("atlas": the template's outline, not the subject's; said so).

`extract_brain`: the template's mask, carried by the registration, refined to the scan's own
outline. An affine registration carries the template's brain mask to a head only as well as an
affine can: the subject's outline differs by a few millimetres (more in an atrophied brain, whose
sulci and ventricles are wider, or a child's), and a mask that takes in skull and CSF makes false
anomalies at every edge. In a T1 head the brain is bright tissue inside a dark shell (CSF, the
skull's tables) with bright scalp fat and marrow beyond, which is what this uses:

1. where to look: the template's signed distance to its brain outline, carried to the scan's
   voxels (`distance`, mm, > 0 outside). Deeper than CORE_MM inside is brain whatever its
   intensity (ventricles, a dark lesion); beyond SEARCH_MM outside never is.
2. the threshold between brain and its dark shell (refused when the brain is not at least
   MIN_CONTRAST times as bright as the shell: not a T1), from the scan itself and locally (a bias
   field changes both): in each block of BLOCK_MM, the midpoint between the median of the
   tissue just inside the template's outline (INSIDE_MM: cortex) and that of the shell just
   outside it (SHELL_BAND_MM: CSF, the skull's inner table), smoothed across blocks; where a
   block has too few of either, the whole brain's.
3. candidate voxels: above the threshold within the search band, and the core;
4. an opening by OPEN_MM that keeps what is connected to the core: bridges through the dura
   and diploe to the scalp are cut, and what was cut off is dropped;
5. a closing by CLOSE_MM and filled holes: sulci and ventricles inside count as brain, as the
   template's own mask counts them;
6. a check: the result is kept only when its volume is within VOLUME_RATIO of the atlas mask's
   and its Dice with it is at least MIN_DICE (a wrong threshold or a failed registration
   shows as a mask far from the atlas's); otherwise the atlas mask stands, and the caller says
   so.

Why not a library: BET (FSL), ROBEX and HD-BET are separate installs (HD-BET a network whose
weights download), and brainvq already has the registration that this refines. What it assumes:
a T1 contrast (brain brighter than CSF and skull); an inverted or T2 contrast fails step 6 and
keeps the atlas mask. Measured in benchmarks/bench_registration.py (Dice against the synthetic
heads' true brain).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from brainvq.data.space.registration import Registration
from brainvq.data.space.scan import Scan, read_user_mask, reference_in_scan
from brainvq.data.space.template import load_reference

STRIPPED_SHELL_RATIO = 0.1
SHELL_MM = (8.0, 20.0)
MASK_KINDS = ("user", "own", "extracted", "atlas")

CORE_MM = 6.0
SEARCH_MM = 10.0
BLOCK_MM = 40.0
OPEN_MM = 2.5
CLOSE_MM = 5.0
INSIDE_MM = (-5.0, -1.0)  # the brain's edge tissue (cortex), from the template's outline
SHELL_BAND_MM = (1.0, 4.0)  # the dark shell around it (CSF, the skull's inner table)
VOLUME_RATIO = (0.8, 1.25)
MIN_DICE = 0.85
MIN_BLOCK_VOXELS = 50  # of each tissue, for a block's own threshold
MIN_CONTRAST = 1.2  # the brain's edge at least this much brighter than its shell (a T1)


class Extraction(NamedTuple):
    """mask: (scan shape) bool, the brain (or None when step 6 refused it); dice: with the
    atlas mask; volume_ratio: its volume over the atlas mask's; why: a note for the output."""

    mask: np.ndarray | None
    dice: float
    volume_ratio: float
    why: str


def _dilate(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """Dilation by a ball of radius_mm, exact in millimetres on anisotropic voxels."""
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


def _erode(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """Erosion by a ball of radius_mm."""
    return ndimage.distance_transform_edt(mask, sampling=spacing) > radius_mm


def _local_threshold(data: np.ndarray, distance: np.ndarray, spacing) -> np.ndarray | None:
    """Step 2: (shape) float32 thresholds between the brain's edge tissue and its dark shell;
    None when the brain's edge is not brighter than its shell (not a T1 contrast)."""
    inside = (distance > INSIDE_MM[0]) & (distance < INSIDE_MM[1])
    shell = (distance > SHELL_BAND_MM[0]) & (distance < SHELL_BAND_MM[1])
    if not inside.any() or not shell.any():
        return None
    tissue, dark = float(np.median(data[inside])), float(np.median(data[shell]))
    if tissue <= MIN_CONTRAST * dark:
        return None
    whole = 0.5 * (tissue + dark)
    block = np.maximum(1, np.round(BLOCK_MM / np.asarray(spacing)).astype(int))
    grid = [int(np.ceil(n / b)) for n, b in zip(data.shape, block, strict=True)]
    table = np.full(grid, whole, np.float32)
    for index in np.ndindex(*grid):
        box = tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block, strict=True))
        tissue, dark = data[box][inside[box]], data[box][shell[box]]
        if tissue.size >= MIN_BLOCK_VOXELS and dark.size >= MIN_BLOCK_VOXELS:
            table[index] = 0.5 * (float(np.median(tissue)) + float(np.median(dark)))
    table = ndimage.gaussian_filter(table, 0.7, mode="nearest")
    zoom = [n / g for n, g in zip(data.shape, grid, strict=True)]
    smooth = ndimage.zoom(table, zoom, order=1, mode="nearest", grid_mode=True)
    return smooth[tuple(slice(0, n) for n in data.shape)]


def extract_brain(data: np.ndarray, distance: np.ndarray, voxel_mm) -> Extraction:
    """Steps 1-6 of the module docstring. data: (X, Y, Z) the scan; distance: (X, Y, Z) mm from
    the registered template's brain outline (> 0 outside); voxel_mm: (3,) the voxel's sides."""
    atlas = distance <= 0
    near = distance <= SEARCH_MM
    if not atlas.any():
        return Extraction(None, 0.0, 0.0, "no template brain inside the field of view")
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(near))
    spacing = tuple(float(v) for v in voxel_mm)
    d, values = distance[box], np.asarray(data[box], np.float32)
    core = d <= -CORE_MM
    threshold = _local_threshold(values, d, spacing)
    if threshold is None:
        return Extraction(
            None,
            0.0,
            0.0,
            "the brain's edge is not brighter than the dark shell around it (expected a T1 "
            "contrast: brain brighter than CSF and skull)",
        )
    candidate = ((values > threshold) & (d <= SEARCH_MM)) | core
    opened = _dilate(_erode(candidate, OPEN_MM, spacing), OPEN_MM, spacing) & candidate
    labels, _ = ndimage.label(opened | core)
    keep = np.unique(labels[core & (labels > 0)])
    brain = np.isin(labels, keep)
    brain = _erode(_dilate(brain, CLOSE_MM, spacing), CLOSE_MM, spacing) & (d <= SEARCH_MM)
    brain = fill_holes(brain)
    mask = np.zeros(distance.shape, bool)
    mask[box] = brain
    overlap = 2 * float((mask & atlas).sum()) / float(mask.sum() + atlas.sum())
    ratio = float(mask.sum()) / float(atlas.sum())
    if not (VOLUME_RATIO[0] <= ratio <= VOLUME_RATIO[1]) or overlap < MIN_DICE:
        return Extraction(
            None,
            overlap,
            ratio,
            f"the extracted brain ({ratio:.0%} of the atlas mask's volume, Dice {overlap:.2f} "
            f"with it) is unlike a brain; expected {VOLUME_RATIO[0]:.0%}-{VOLUME_RATIO[1]:.0%} "
            f"and Dice >= {MIN_DICE}",
        )
    return Extraction(
        mask,
        overlap,
        ratio,
        f"extracted from the head ({ratio:.0%} of the atlas mask's volume, Dice {overlap:.2f})",
    )


def scan_brain_mask(
    scan: Scan, registration: Registration, user_mask: str | Path | None = None
) -> tuple[np.ndarray, str, str]:
    """(mask (scan shape) bool, kind: one of MASK_KINDS, a note for the output)."""
    if user_mask is not None:
        return (
            read_user_mask(user_mask, scan),
            "user",
            f"brain mask given with --mask ({user_mask})",
        )
    reference = load_reference()
    distance = reference_in_scan(scan, registration, reference.signed_distance(), cval=1e3)
    atlas = distance <= 0
    brain = scan.data[atlas]
    shell = scan.data[(distance >= SHELL_MM[0]) & (distance <= SHELL_MM[1])]
    level = float(np.median(brain)) if brain.size else 0.0
    ratio = float(shell.mean()) / level if shell.size and level > 0 else 0.0
    if ratio < STRIPPED_SHELL_RATIO:
        near = distance <= SHELL_MM[0]  # the scan's own outline, not the template's
        threshold = max(2.5 * float(shell.mean()) if shell.size else 0.0, 0.05 * level)
        own = ndimage.binary_closing(near & (scan.data > threshold), iterations=2)
        own = largest_component(fill_holes(own))
        if own.sum() > 0.5 * atlas.sum():
            return (
                own,
                "own",
                (
                    f"skull-stripped scan (outside the brain {ratio:.1%} of its brightness): "
                    "its own brain mask"
                ),
            )
    extraction = extract_brain(scan.data, distance, scan.voxel_mm)
    if extraction.mask is not None:
        return (
            extraction.mask,
            "extracted",
            (
                f"scan with a skull (outside the brain {ratio:.0%} of its brightness): brain "
                f"{extraction.why}"
            ),
        )
    return (
        atlas,
        "atlas",
        (
            f"scan with a skull (outside the brain {ratio:.0%} of its brightness): brain mask "
            "from the template (MNI152) carried by the registration, an atlas mask, not the "
            f"subject's own outline, since {extraction.why}; give --mask for a better one"
        ),
    )


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background component that does not touch the array's border filled:
    scipy's binary_fill_holes, by one labelling instead of dilating until nothing changes (which
    takes minutes on a 1 mm head volume)."""
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    border = np.zeros(n + 1, bool)
    for axis in range(mask.ndim):
        for end in (0, -1):
            border[np.take(labels, end, axis=axis)] = True
    border[0] = True  # label 0 is the mask itself
    return mask | ~border[labels]


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))
