"""A user's scan: read and checked, and its brain mask (its own, the atlas's or the user's).

`read_scan` takes a NIfTI file as it comes: any orientation code, voxel size or field of view
(the affine says where each voxel is; nothing is reoriented), a 4D series (its first volume, with
a note), NaN or infinite voxels (background, with a note: registered and masked volumes often
hold NaN outside the brain). What it refuses, with the file named: a file NIfTI cannot read, a 2D
image, more than 4 dimensions, a volume with no finite voxel or a constant one, an affine with
more shear than a millimetre across the field of view (SimpleITK images cannot shear).

`scan_brain_mask` decides which brain mask answers are given inside:
- `--mask MASK`: the user's own, which must have the scan's shape and affine;
- a skull-stripped scan (the shell 8-20 mm outside the registered template brain is dark:
  its mean is below STRIPPED_SHELL_RATIO of the brain's median) keeps its own mask: its
  foreground there, holes filled;
- a scan with a skull gets the template's brain mask carried to it by the registration: an
  atlas mask, said so in the output, since it is the template's outline and not the subject's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.data.space.registration import Registration, shear_mm
from brainvq.data.space.template import load_reference

MAX_SHEAR_MM = 1.0
STRIPPED_SHELL_RATIO = 0.1
SHELL_MM = (8.0, 20.0)
MASK_KINDS = ("user", "own", "atlas")


@dataclass
class Scan:
    """path; data: (X, Y, Z) float32, finite; affine: (4, 4) voxel -> world mm (RAS);
    header: the NIfTI header (its qform/sform codes go into the outputs); notes."""

    path: Path
    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def _load(path: Path) -> nib.spatialimages.SpatialImage:
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such file (expected a .nii or .nii.gz volume)"
        ) from None
    except Exception as e:  # nibabel raises several unrelated types for a bad file
        raise ValueError(
            f"{path}: cannot read as NIfTI ({e}); expected a .nii or .nii.gz volume"
        ) from None


def read_scan(path: str | Path) -> Scan:
    """The 3D volume of a NIfTI file (see the module docstring for what is taken and refused)."""
    path = Path(path)
    img = _load(path)
    shape = tuple(img.shape)
    notes = []
    spatial = shape[:3]
    if len(shape) < 3 or min(spatial) <= 1:
        raise ValueError(f"{path}: NIfTI image is 2D (shape {shape}); expected a 3D volume")
    if len(shape) > 4:
        raise ValueError(
            f"{path}: NIfTI image has {len(shape)} dimensions (shape {shape}); expected a 3D volume"
        )
    if len(shape) == 4:
        if shape[3] > 1:
            notes.append(f"4D image (shape {shape}): took the first volume")
        img = img.slicer[..., 0]
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(
            f"{path}: cannot read the volume ({e}); expected a complete .nii or .nii.gz volume"
        ) from None
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"{path}: the NIfTI affine is not invertible: {affine.tolist()}")
    bad = ~np.isfinite(data)
    if bad.all():
        raise ValueError(f"{path}: every voxel is NaN or infinite; expected a brain volume")
    if bad.any():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(bad.sum()) - n_nan
        found = " and ".join(
            f"{n:,} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n
        )
        notes.append(f"{found} voxels ({bad.mean():.1%} of the volume) treated as background (0)")
        data = np.where(bad, 0.0, data).astype(np.float32)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        raise ValueError(
            f"{path}: the volume is constant (every voxel is {lo:g}); expected a brain"
        )
    shear = shear_mm(affine, data.shape)
    if shear > MAX_SHEAR_MM:
        raise ValueError(
            f"{path}: the affine shears the volume by {shear:.1f} mm across its field of view "
            f"(more than {MAX_SHEAR_MM} mm); resample it to a grid without shear first"
        )
    if shear > 0.01:
        notes.append(f"affine shear of {shear:.2f} mm across the field of view ignored")
    header = img.header.copy() if isinstance(img.header, nib.Nifti1Header) else nib.Nifti1Header()
    return Scan(path, data, affine, header, notes)


def reference_in_scan(
    scan: Scan, registration: Registration, volume: np.ndarray, order: int = 1, cval: float = 0.0
) -> np.ndarray:
    """A volume on the template's grid (e.g. its brain mask, (X, Y, Z)) resampled at every voxel
    of the scan through the registration: (scan shape) float32, `cval` beyond the template."""
    reference = load_reference()
    # scan voxel -> world -> reference mm -> template voxel
    to_template = np.linalg.inv(reference.affine) @ registration.to_reference @ scan.affine
    return ndimage.affine_transform(
        np.asarray(volume, np.float32),
        to_template[:3, :3],
        offset=to_template[:3, 3],
        output_shape=scan.shape,
        order=order,
        mode="constant",
        cval=cval,
    )


def read_user_mask(path: str | Path, scan: Scan) -> np.ndarray:
    """The user's brain mask (`--mask`): (scan shape) bool, voxels > 0.5 (or > 0 for a label
    image); ValueError naming the file when its shape or affine differ from the scan's."""
    path = Path(path)
    img = _load(path)
    data = np.asarray(img.dataobj)
    data = data[..., 0] if data.ndim == 4 else data
    if data.shape != scan.shape:
        raise ValueError(
            f"{path}: the mask's shape {data.shape} differs from the scan's {scan.shape} "
            f"({scan.path}); expected a mask on the scan's own voxels"
        )
    if not np.allclose(img.affine, scan.affine, atol=1e-3):
        raise ValueError(
            f"{path}: the mask's affine differs from the scan's ({scan.path}); expected a mask "
            "on the scan's own voxels"
        )
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    mask = data > (0.5 if data.max() <= 1 else 0)
    if not mask.any():
        raise ValueError(f"{path}: the mask is empty; expected the brain marked > 0")
    return mask


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
        own = _largest_component(fill_holes(own))
        if own.sum() > 0.5 * atlas.sum():
            return (
                own,
                "own",
                (
                    f"skull-stripped scan (outside the brain {ratio:.1%} of its brightness): "
                    "its own brain mask"
                ),
            )
    return (
        atlas,
        "atlas",
        (
            f"scan with a skull (outside the brain {ratio:.0%} of its brightness): brain mask "
            "from the template (MNI152) carried by the registration, an atlas mask, not the "
            "subject's own outline; give --mask for a better one"
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


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))
