"""The three planes of a volume on the frame: axial, coronal and sagittal.

A volume is (D, H, W): D the frame's levels (inferior to superior), H its rows and W its columns.
In the OASIS orientation (brainvq.data.augment) the rows run left-right and the columns
anterior-posterior, so an axial slice is volume[k], a coronal slice volume[:, :, k] (D, H) and
a sagittal slice volume[:, k] (D, W). Figures show one pixel row per level: the frame's levels
are closer together than its pixels, so through-plane views are stretched, not to scale.
"""

from __future__ import annotations

import numpy as np

PLANES = ("axial", "coronal", "sagittal")
# the volume axis that a plane's slices cut across
PLANE_AXIS = {"axial": 0, "coronal": 2, "sagittal": 1}


def plane_slices(volume: np.ndarray, plane: str) -> np.ndarray:
    """Every slice of `volume` (D, H, W) in `plane`: axial (D, H, W), coronal (W, D, H),
    sagittal (H, D, W); a view, same dtype."""
    if plane not in PLANE_AXIS:
        raise ValueError(f"unknown plane {plane!r}: expected one of {', '.join(PLANES)}")
    if volume.ndim != 3:
        raise ValueError(f"expected a volume (D, H, W), got shape {volume.shape}")
    return np.moveaxis(volume, PLANE_AXIS[plane], 0)


def middle_planes(volume: np.ndarray) -> list[np.ndarray]:
    """The middle slice of `volume` (D, H, W) in each plane, in PLANES order."""
    out = []
    for plane in PLANES:
        slices = plane_slices(volume, plane)
        out.append(slices[len(slices) // 2])
    return out


def planes_figure(volumes: list[np.ndarray]) -> np.ndarray:
    """One row per volume (D, H, W) uint8, its middle axial, coronal and sagittal slices side
    by side, each pane top-aligned on a black canvas: (rows * max(H, D), 2W + H + D gaps) uint8."""
    if not volumes:
        raise ValueError("planes_figure needs at least one volume")
    gap = 2
    rows = []
    for volume in volumes:
        panes = middle_planes(np.asarray(volume, dtype=np.uint8))
        height = max(p.shape[0] for p in panes)
        width = sum(p.shape[1] for p in panes) + gap * (len(panes) - 1)
        row = np.zeros((height + gap, width), dtype=np.uint8)
        x = 0
        for pane in panes:
            row[: pane.shape[0], x : x + pane.shape[1]] = pane
            x += pane.shape[1] + gap
        rows.append(row)
    return np.concatenate(rows)[:-gap]
