"""Between a scan's voxels and a frame's pixels, through a registration.

`scan_to_frame` samples a scan (or a mask on its voxels) at every pixel of some frame levels:
each pixel's reference point goes through the registration into the scan's world, then its
voxels. The scan is first blurred along each of its axes just enough that the frame's coarser
pixels do not alias (a Gaussian of sigma 0.5 * sqrt(target^2 - voxel^2), the target being the
frame's spacing along that axis's direction).

`frame_to_scan` carries a stack of frame slices back to every voxel of the scan: each voxel's
reference point, its (row, column, level) on the frame, trilinear interpolation between the
levels. Voxels whose level lies outside the frame's levels, or between a computed level and one
that was not, get `fill` (NaN: not covered, never scored).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainvq.data.space.frame import Frame

CHUNK_VOXELS = 4_000_000  # voxels mapped at a time by frame_to_scan (bounds the memory)


def antialias_sigma(
    scan_affine: np.ndarray, to_reference: np.ndarray, frame: Frame, size: int
) -> np.ndarray:
    """(3,) Gaussian sigma in voxels per scan axis before sampling at the frame's spacing."""
    voxel_mm = np.linalg.norm(scan_affine[:3, :3], axis=0)
    directions = to_reference[:3, :3] @ scan_affine[:3, :3]  # scan axes in reference mm
    directions /= np.linalg.norm(directions, axis=0)
    frame_axes = frame.affine_at(size)[:3, :3]
    spacing = np.linalg.norm(frame_axes, axis=0)  # row, column, level mm
    units = frame_axes / spacing
    sigma = np.zeros(3)
    for k in range(3):
        weights = np.abs(units.T @ directions[:, k])  # how much the axis runs along each
        target = float(weights @ spacing / max(weights.sum(), 1e-9))
        sigma[k] = 0.5 * np.sqrt(max(target**2 - voxel_mm[k] ** 2, 0.0)) / voxel_mm[k]
    return sigma


def scan_to_frame(
    data: np.ndarray,
    scan_affine: np.ndarray,
    to_scan: np.ndarray,
    frame: Frame,
    size: int,
    levels: np.ndarray,
    *,
    order: int = 1,
    antialias: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a scan volume at the frame's pixels.

    data: (X, Y, Z) on the scan's voxels; scan_affine: its voxel -> world; to_scan: reference mm
    -> world (the registration); levels: (L,) frame levels. Returns (slices (L, size, size)
    float32, inside (L, size, size) bool: the pixel lies inside the scan's field of view)."""
    data = np.asarray(data, dtype=np.float32)
    if antialias:
        sigma = antialias_sigma(scan_affine, np.linalg.inv(to_scan), frame, size)
        if (sigma > 0.2).any():
            data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    points = frame.points(size, levels)  # (3, L, S, S) reference mm
    to_voxels = np.linalg.inv(scan_affine) @ to_scan
    flat = points.reshape(3, -1)
    vox = to_voxels[:3, :3] @ flat + to_voxels[:3, 3:4]
    values = ndimage.map_coordinates(data, vox, order=order, mode="nearest")
    shape = np.asarray(data.shape)[:, None]
    inside = ((vox >= -0.5) & (vox <= shape - 0.5)).all(axis=0)
    out_shape = points.shape[1:]
    return values.reshape(out_shape).astype(np.float32), inside.reshape(out_shape)


def frame_to_scan(
    stack: np.ndarray,
    levels: np.ndarray,
    frame: Frame,
    scan_affine: np.ndarray,
    scan_shape: tuple[int, int, int],
    to_scan: np.ndarray,
    *,
    fill: float = np.nan,
    order: int = 1,
) -> np.ndarray:
    """Carry frame slices back to the scan's voxels.

    stack: (L, size, size) values at frame `levels` (L,) (a subset of 0..n_levels-1, in any
    order); returns (scan_shape) float32: interpolated where a voxel lies between computed
    levels (or within half a level beyond the first or last of the frame), `fill` elsewhere.
    order 0 takes the nearest pixel and level (for labels such as code indices)."""
    stack = np.asarray(stack, dtype=np.float32)
    size = stack.shape[-1]
    n_levels = frame.n_levels
    full = np.zeros((n_levels, size, size), np.float32)
    computed = np.zeros(n_levels + 1, bool)  # one spare so that level + 1 is always an index
    full[np.asarray(levels, dtype=int)] = np.nan_to_num(stack)
    computed[np.asarray(levels, dtype=int)] = True
    to_frame = np.linalg.inv(frame.affine_at(size)) @ np.linalg.inv(to_scan) @ scan_affine
    out = np.full(int(np.prod(scan_shape)), fill, np.float32)
    n = out.size
    for start in range(0, n, CHUNK_VOXELS):
        idx = np.arange(start, min(start + CHUNK_VOXELS, n))
        ijk = np.stack(np.unravel_index(idx, scan_shape)).astype(np.float64)
        rck = to_frame[:3, :3] @ ijk + to_frame[:3, 3:4]  # (row, column, level)
        keep = (rck[2] >= -0.5) & (rck[2] <= n_levels - 0.5)
        row, column = rck[0, keep], rck[1, keep]
        level = np.clip(rck[2, keep], 0, n_levels - 1)
        below = np.floor(level).astype(int)
        weight = level - below
        # a voxel between two levels needs both (unless it sits on one of them)
        ok = (computed[below] | (weight > 1 - 1e-6)) & (computed[below + 1] | (weight < 1e-6))
        coords = np.stack([level, row, column])
        if order == 0:
            coords = np.round(coords)
        values = ndimage.map_coordinates(full, coords, order=1, mode="nearest")
        in_plane = (row >= -0.5) & (row <= size - 0.5) & (column >= -0.5) & (column <= size - 0.5)
        values = np.where(in_plane, values, 0.0)
        out[idx[keep]] = np.where(ok, values, fill)
    return out.reshape(scan_shape)
