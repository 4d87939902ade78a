"""NIfTI volumes (.nii, .nii.gz): N axial slices per volume, oriented like the OASIS PNGs.

Each volume is reoriented to canonical RAS, its brain (foreground) is found, N axial slices
are taken evenly spaced over the slices that contain brain, and intensities are scaled per
volume by robust percentiles of the brain voxels. Volumes are split 80/10/10 by a stable hash
of their file name, with at least one volume in train.

Orientation: an OASIS PNG shows the anterior-posterior axis horizontally (anterior on the
right) and the left-right axis vertically. In RAS voxel order a slice `data[:, :, z]` is
indexed (x: left -> right, y: posterior -> anterior), which is exactly that picture.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from brainvq.data.builder import SliceBuilder
from brainvq.data.imaging import pad_to_square, resize_square
from brainvq.data.progress import progress
from brainvq.data.sliceset import SliceSet
from brainvq.data.splits import DEFAULT_FRACTIONS, assign_splits

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PERCENTILES = (0.5, 99.5)
# A voxel is foreground if it is brighter than this fraction of the way from the volume's
# minimum to its 99th percentile; an axial slice contains brain if at least MIN_AREA of the
# largest slice's foreground is in it (ignores a few stray bright voxels).
FOREGROUND_FRACTION = 0.1
MIN_AREA = 0.05


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


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float], str | None]:
    """Load `path` as a 3D float32 volume in RAS order.

    Returns (data (X, Y, Z) float32, voxel sizes in mm, note or None). A 4D image gives its
    first volume and a note; a 2D image (or a 3D one with a single slice) is a ValueError.
    """
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises several unrelated types for a bad file
        raise ValueError(
            f"{path}: cannot read as NIfTI ({e}); expected a .nii or .nii.gz volume"
        ) from None
    shape = img.shape
    note = None
    if len(shape) < 3 or (len(shape) == 3 and min(shape) == 1):
        raise ValueError(f"{path}: NIfTI image is 2D (shape {shape}); expected a 3D volume")
    if len(shape) == 4:
        img = img.slicer[..., 0]
        note = f"4D image (shape {shape}): took the first volume"
    elif len(shape) > 4:
        raise ValueError(
            f"{path}: NIfTI image has {len(shape)} dimensions (shape {shape}); expected a 3D volume"
        )
    try:  # a corrupt affine fails to reorient; truncated voxel data fails to read
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.get_fdata(dtype=np.float32))
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(
            f"{path}: cannot read the volume ({e}); expected a complete .nii or .nii.gz volume"
        ) from None
    return data, zooms, note


def brain_slices(data: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Axial levels to take and the foreground mask.

    Args:
        data: (X, Y, Z) float volume.
        n_levels: how many slices to take.
    Returns:
        (z indices (n_levels,) int, foreground (X, Y, Z) bool).
    """
    lo, hi = float(data.min()), float(np.percentile(data, 99))
    foreground = data > lo + FOREGROUND_FRACTION * (hi - lo)
    area = foreground.sum(axis=(0, 1))  # (Z,)
    if area.max() == 0:
        raise ValueError("volume has no foreground (it is constant)")
    with_brain = np.nonzero(area >= MIN_AREA * area.max())[0]
    z = np.round(np.linspace(with_brain[0], with_brain[-1], n_levels)).astype(int)
    return z, foreground


def normalise(data: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Scale so the 0.5 and 99.5 percentiles of the brain voxels map to 0 and 1 (clipped).

    Returns float32 in [0, 1], same shape as `data`.
    """
    lo, hi = np.percentile(data[foreground], PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def slice_to_image(plane: np.ndarray, zooms: tuple[float, float], size: int) -> np.ndarray:
    """One axial plane (X, Y) float in [0, 1] -> (size, size) uint8, square pixels, padded."""
    pixels = np.round(plane * 255).astype(np.uint8)
    zx, zy = zooms
    if not np.isclose(zx, zy, rtol=0.01):
        step = min(zx, zy)
        h, w = round(pixels.shape[0] * zx / step), round(pixels.shape[1] * zy / step)
        pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.BILINEAR))
    return resize_square(pad_to_square(pixels), size)


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
    ) -> None:
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        self.root = root
        self.files = sorted(files)
        self.skipped = sorted(skipped)
        self.n_levels = n_levels
        self.fractions = fractions

    def _path(self, rel: str) -> Path:
        return self.root if self.root.is_file() else self.root / rel

    def fingerprint(self) -> dict:
        """Every volume with its size and mtime, and the slicing options."""
        files = []
        for rel in self.files:
            st = self._path(rel).stat()
            files.append([rel, st.st_size, st.st_mtime_ns])
        return {
            "root": str(self.root.resolve()),
            "files": files,
            "skipped": self.skipped,
            "n_levels": self.n_levels,
            "fractions": list(self.fractions),
        }

    def load(self, size: int, show_progress: bool = True) -> SliceSet:
        """Slice, normalise and resize every volume."""
        builder = SliceBuilder(size)
        for rel in self.skipped:
            builder.count("not a NIfTI volume, skipped", rel)
        ids = {rel: volume_id(Path(rel).name) for rel in self.files}
        split_of = assign_splits(list(ids.values()), self.fractions)
        builder.note(
            f"{self.n_levels} axial slices per volume, split by volume (80/10/10 by a stable hash)"
        )
        for rel in progress(self.files, len(self.files), "slicing NIfTI volumes", show_progress):
            path = self._path(rel)
            data, zooms, note = read_volume(path)
            if note:
                builder.count(note, rel)
            try:
                z_levels, foreground = brain_slices(data, self.n_levels)
            except ValueError as e:
                raise ValueError(f"{path}: {e}; expected a brain volume") from None
            if len(np.unique(z_levels)) < self.n_levels:
                builder.count(
                    f"fewer than {self.n_levels} slices contain brain: some slices repeat", rel
                )
            scaled = normalise(data, foreground)
            for k, z in enumerate(z_levels):
                image = slice_to_image(scaled[:, :, z], zooms[:2], size)
                builder.add(image, split_of[ids[rel]], ids[rel], k, f"{rel}#z{int(z)}")
        return builder.build(str(self.root))
