"""Data: every source brainvq learns from, read into one thing, a SliceSet (slices with their
subject, level and split) kept in a slice store on disk.

- Sources: the OASIS course layout as folders or a zip (oasis); folders of PNG/JPEG slices
  (folder, imaging); volumes as training data, each put on the reference frame (nifti: any scan
  brainvq.data.volumes reads); the demo cohort made from nilearn's MNI152 template (demo).
- Loading: `load_slices(source, size)` (loader) is the one entry point. A source's decoding tasks
  (decode, builder) run once into a slice store (store, cached by cache), split by subject with
  a stable hash (splits), and come back memory-mapped as a SliceSet (sliceset); summary says
  what one holds (`brainvq data inspect`).
- space/: the reference space: the MNI152 template, a run's frame, registration, intensity
  standardisation, brain masks, resampling between a scan's voxels and a frame.
- volumes/: scans as they come: NIfTI, MGZ, NRRD/MHA, DICOM series and BIDS trees, found and read
  into one `Scan`.
- Defined once, imported everywhere else: slice file names (slice_names) and NIfTI xform codes
  (nifti_codes).

Torch datasets, the data module and augmentation live in `dataset` and `augment`, imported
separately, so that loading data does not import torch.
"""

from brainvq.data.loader import load_slices
from brainvq.data.sliceset import SPLITS, SliceSet

__all__ = ["SPLITS", "SliceSet", "load_slices"]
