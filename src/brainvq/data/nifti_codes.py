"""NIfTI xform codes (what a header says its qform or sform affine maps voxels into), and the
one writer of brainvq's NIfTI outputs (`nifti_gz_bytes`).

The values are the NIfTI-1 standard's (nifti1.h, NIFTI_XFORM_*). brainvq writes a scan's own
codes back with its answers in the scan's space, XFORM_SCANNER for a scan read from a format
that has none, XFORM_MNI152 for volumes on the reference frame, XFORM_ALIGNED for volumes on a
frame that is only assumed to be it (a run of PNG slices), and XFORM_UNKNOWN for volumes with no
frame at all (voxel indices). Writers take them from here, so that no file carries a bare
number for them.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

XFORM_UNKNOWN = 0  # NIFTI_XFORM_UNKNOWN: voxel indices, no known space
XFORM_SCANNER = 1  # NIFTI_XFORM_SCANNER_ANAT: the scanner's anatomical coordinates
XFORM_ALIGNED = 2  # NIFTI_XFORM_ALIGNED_ANAT: aligned to something, here an assumed frame
XFORM_MNI152 = 4  # NIFTI_XFORM_MNI_152: MNI152 coordinates


def nifti_gz_bytes(
    data: np.ndarray,
    affine: np.ndarray,
    description: str,
    qform_code: int,
    sform_code: int | None = None,
) -> bytes:
    """data (any shape, any dtype) with its 4x4 affine (voxels -> mm) as gzipped NIfTI-1 bytes:
    the affine as both qform and sform with their codes (sform_code: qform_code's unless given),
    millimetres, `description` in the header (ASCII, 79 characters at most). The same bytes for
    the same input: no time stamp."""
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=qform_code if sform_code is None else sform_code)
    image.header["descrip"] = description.encode("ascii", "replace")[:79]
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), mtime=0)
