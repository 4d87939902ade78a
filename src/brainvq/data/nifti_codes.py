"""NIfTI xform codes: what a header says its qform or sform affine maps voxels into.

The values are the NIfTI-1 standard's (nifti1.h, NIFTI_XFORM_*). brainvq writes a scan's own
codes back with its answers in the scan's space, XFORM_SCANNER for a scan read from a format
that has none, XFORM_MNI152 for volumes on the reference frame, XFORM_ALIGNED for volumes on a
frame that is only assumed to be it (a run of PNG slices), and XFORM_UNKNOWN for volumes with no
frame at all (voxel indices). Writers take them from here, so that no file carries a bare
number for them.
"""

from __future__ import annotations

XFORM_UNKNOWN = 0  # NIFTI_XFORM_UNKNOWN: voxel indices, no known space
XFORM_SCANNER = 1  # NIFTI_XFORM_SCANNER_ANAT: the scanner's anatomical coordinates
XFORM_ALIGNED = 2  # NIFTI_XFORM_ALIGNED_ANAT: aligned to something, here an assumed frame
XFORM_MNI152 = 4  # NIFTI_XFORM_MNI_152: MNI152 coordinates
