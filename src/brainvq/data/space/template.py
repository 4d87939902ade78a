"""The reference: nilearn's MNI152 2009 T1 template and brain mask, 1 mm, RAS millimetres.

Loaded once per process. The template ships skull-stripped (zero outside its brain mask); its
intensities are scaled so that the 95th percentile of the brain is 1 (white matter).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# The brain's centre in MNI millimetres (middle of the mask's bounding box, rounded): rotations
# and scalings of the registration act about it, so their parameters stay uncoupled from shifts.
BRAIN_CENTRE_MM = (0.0, -18.0, 18.0)


@dataclass(frozen=True, eq=False)  # hashed by identity: one per process
class Reference:
    """t1: (X, Y, Z) float32, brain 95th percentile = 1, zero outside the brain; mask: (X, Y, Z)
    bool brain mask; affine: (4, 4) voxel -> MNI mm (RAS)."""

    t1: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    def signed_distance(self) -> np.ndarray:
        """(X, Y, Z) float32 millimetres from the brain mask's outline, > 0 outside."""
        return _signed_distance(self)

    def z_extent_mm(self) -> tuple[float, float]:
        """(lowest, highest) MNI z (mm) of the template's field of view."""
        z = self.affine[2, 2] * np.array([0, self.t1.shape[2] - 1]) + self.affine[2, 3]
        return float(z.min()), float(z.max())

    def brain_z_extent_mm(self) -> tuple[float, float]:
        """(lowest, highest) MNI z (mm) of a brain-mask voxel: -72 (the brain stem, cut by the
        field of view) to +82 (the vertex) for nilearn's MNI152 2009 template."""
        k = np.flatnonzero(self.mask.any(axis=(0, 1)))
        z = self.affine[2, 2] * k[[0, -1]] + self.affine[2, 3]
        return float(z.min()), float(z.max())

    def to_voxels(self, points_mm: np.ndarray) -> np.ndarray:
        """(3, ...) MNI millimetres -> (3, ...) continuous voxel indices of the template."""
        inv = np.linalg.inv(self.affine)
        flat = points_mm.reshape(3, -1)
        return (inv[:3, :3] @ flat + inv[:3, 3:4]).reshape(points_mm.shape)


@functools.lru_cache(maxsize=1)
def load_reference() -> Reference:
    """The MNI152 2009 template and brain mask that nilearn ships (no download)."""
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    if not np.allclose(t1_img.affine, mask_img.affine):
        raise ValueError("nilearn's MNI152 template and brain mask do not share an affine")
    mask = np.asarray(mask_img.dataobj) > 0.5
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32) * mask
    t1 /= np.percentile(t1[mask], 95)
    return Reference(t1.astype(np.float32), mask, np.asarray(t1_img.affine, dtype=np.float64))


@functools.lru_cache(maxsize=1)
def _signed_distance(reference: Reference) -> np.ndarray:
    inside = reference.mask
    outside = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
    return outside.astype(np.float32)
