"""The registration check: a scan resampled onto the reference, in three planes, with the
template brain's outline over it, the run's levels marked, and the whole field of view.

If the registration worked, the red outline follows the scan's brain in every plane; the green
outline is the brain mask the answers are given inside (its own, extracted, or the atlas's). The
run's levels are outlined in yellow, and what lies beyond them is dimmed and tinted blue: that
part of the brain is not judged by the run (NaN in its maps). The fourth panel is the scan's
whole field of view in the sagittal plane through the brain: where in a head with a neck and
shoulders the brain was found.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainvq.data.space.frame import BASE_SIZE, Frame
from brainvq.data.space.template import BRAIN_CENTRE_MM, load_reference

OUTLINE = np.array([255, 40, 40], dtype=np.uint8)
MASK = np.array([40, 220, 40], dtype=np.uint8)
BAND = np.array([255, 220, 0], dtype=np.uint8)
NOT_JUDGED = np.array([40, 70, 160], dtype=np.float64)  # the tint beyond the run's levels
NOT_JUDGED_OPACITY = 0.55
STEP_MM = 1.0
FIELD_MM = ((-80.0, 80.0), (-115.0, 80.0), (-60.0, 90.0))  # x, y, z shown


def _plane(axis: int, at_mm: float) -> np.ndarray:
    """(3, rows, columns) MNI mm of a plane normal to `axis` through `at_mm`; rows run down the
    picture (superior at the top), columns left to right."""
    others = [a for a in range(3) if a != axis]
    u = np.arange(*FIELD_MM[others[0]], STEP_MM)
    v = np.arange(*FIELD_MM[others[1]], STEP_MM)
    if axis == 2:  # axial: rows posterior -> anterior reversed (anterior at the top)
        rows, cols = v[::-1], u
        grid = np.meshgrid(rows, cols, indexing="ij")
        return np.stack([grid[1], grid[0], np.full(grid[0].shape, at_mm)])
    rows, cols = v[::-1], u  # coronal (x across, z up) and sagittal (y across, z up)
    grid = np.meshgrid(rows, cols, indexing="ij")
    out = np.empty((3, *grid[0].shape))
    out[axis] = at_mm
    out[others[0]] = grid[1]
    out[others[1]] = grid[0]
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _sample(volume: np.ndarray, to_voxels: np.ndarray, points: np.ndarray, order: int):
    """`volume` (X, Y, Z) at reference points (3, rows, cols) through to_voxels (4, 4)."""
    flat = points.reshape(3, -1)
    vox = to_voxels[:3, :3] @ flat + to_voxels[:3, 3:4]
    values = ndimage.map_coordinates(np.asarray(volume, np.float32), vox, order=order, cval=0.0)
    return values.reshape(points.shape[1:])


def within_levels(frame: Frame, points: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: reference points (3, rows, cols) within the frame's levels (half a
    level beyond the first and last, as the maps reach)."""
    level = frame.to_grid(points, BASE_SIZE)[2]
    return (level >= -0.5) & (level <= frame.n_levels - 0.5)


def mark_levels(rgb: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """rgb (rows, cols, 3) uint8 with what lies beyond the levels (`inside` False) dimmed and
    tinted, and the levels' edge in yellow."""
    out = rgb.astype(np.float64)
    out[~inside] = (1 - NOT_JUDGED_OPACITY) * out[~inside] + NOT_JUDGED_OPACITY * NOT_JUDGED
    out = out.round().astype(np.uint8)
    out[inside & ~ndimage.binary_erosion(inside, border_value=1)] = BAND
    return out


def _whole_field(data: np.ndarray, scan_affine: np.ndarray, to_scan: np.ndarray, height: int):
    """(3, height, cols) reference mm: the sagittal plane x = 0 spanning the scan's whole field
    of view, at the step that makes it `height` rows tall."""
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in data.shape[:3]], indexing="ij"))
    corners = corners.reshape(3, -1).astype(np.float64)
    world = scan_affine[:3, :3] @ corners + scan_affine[:3, 3:4]
    ref = np.linalg.inv(to_scan)
    mm = ref[:3, :3] @ world + ref[:3, 3:4]
    (y0, y1), (z0, z1) = (mm[1].min(), mm[1].max()), (mm[2].min(), mm[2].max())
    step = max((z1 - z0) / height, 0.5)
    z = z1 - step * np.arange(height)
    y = np.arange(y0, y1, step)
    grid = np.meshgrid(z, y, indexing="ij")
    return np.stack([np.zeros(grid[0].shape), grid[1], grid[0]])


def registration_figure(
    data: np.ndarray,
    scan_affine: np.ndarray,
    to_scan: np.ndarray,
    frame: Frame | None = None,
    size: int = 128,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: axial, coronal and sagittal planes through the brain's centre of the scan
    `data` (X, Y, Z) seen through `to_scan` (reference mm -> scan world mm), then the whole field
    of view; `mask` (scan shape, bool): the brain mask used, outlined in green; `frame`: the
    run's, whose levels are marked in every panel (module docstring)."""
    reference = load_reference()
    depth = reference.signed_distance()
    to_voxels = np.linalg.inv(scan_affine) @ to_scan
    scale = float(np.percentile(data[data > 0], 99.5)) if (data > 0).any() else 1.0
    planes = [_plane(axis, BRAIN_CENTRE_MM[axis] if axis != 2 else 12.0) for axis in (2, 1, 0)]
    height = max(p.shape[1] for p in planes)
    planes.append(_whole_field(data, scan_affine, to_scan, height))
    panels = []
    for points in planes:
        gray = np.clip(_sample(data, to_voxels, points, order=1) / scale, 0, 1)
        rgb = np.repeat((gray * 255).astype(np.uint8)[:, :, None], 3, axis=2)
        flat = points.reshape(3, -1)
        inside = ndimage.map_coordinates(depth, reference.to_voxels(flat), order=1, cval=1e3)
        rgb[_outline(inside.reshape(points.shape[1:]) <= 0)] = OUTLINE
        if mask is not None:
            rgb[_outline(_sample(mask, to_voxels, points, order=0) > 0.5)] = MASK
        if frame is not None:
            rgb = mark_levels(rgb, within_levels(frame, points))
        panels.append(rgb)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    return np.concatenate(padded, axis=1)
