"""A user's scan: its voxels and affine, the template carried onto them, and the user's mask.

A `Scan` is what every reader gives, whatever the file format (brainvq.data.volumes: NIfTI, MGZ,
NRRD/MHA, DICOM series, BIDS trees): its data on its own voxels and the affine that places them in
RAS millimetres.

`reference_in_scan` carries a volume on the template's grid to the scan's voxels through a
registration; `read_user_mask` reads a brain mask the user gives (`--mask`).
brainvq.data.space.brain_mask decides which brain mask a scan's answers are given inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainvq.data.space.registration import Registration
from brainvq.data.space.template import load_reference


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
