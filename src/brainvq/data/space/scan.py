"""A user's scan: its voxels and affine, and its brain mask (its own, the atlas's or the user's).

A `Scan` is what every reader gives, whatever the file format (brainvq.data.volumes: NIfTI, MGZ,
NRRD/MHA, DICOM series, BIDS trees): its data on its own voxels and the affine that places them in
RAS millimetres.

`scan_brain_mask` decides which brain mask answers are given inside:
- `--mask MASK`: the user's own, which must have the scan's shape and affine;
- a skull-stripped scan (the shell 8-20 mm outside the registered template brain is dark:
  its mean is below STRIPPED_SHELL_RATIO of the brain's median) keeps its own mask: its
  foreground there, holes filled;
- a scan with a skull gets the template's brain mask carried to it by the registration: an
  atlas mask, said so in the output, since it is the template's outline and not the subject's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.data.space.registration import Registration
from brainvq.data.space.template import load_reference

STRIPPED_SHELL_RATIO = 0.1
SHELL_MM = (8.0, 20.0)
MASK_KINDS = ("user", "own", "atlas")


@dataclass
class Scan:
    """path: the file, or a DICOM series' folder; data: (X, Y, Z) float32, finite; affine:
    (4, 4) voxel -> world mm (RAS); header: the NIfTI header (its qform/sform codes go into the
    outputs); notes; name: what the outputs are named after (the reader's choice)."""

    path: Path
    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    notes: list[str] = field(default_factory=list)
    name: str = "scan"

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
