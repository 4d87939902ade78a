"""Data sources (OASIS folder or zip, PNG/JPEG folders, NIfTI volumes, the demo cohort) -> SliceSet.

`load_slices(source, size)` is the one entry point; torch datasets and augmentation live in
`brainvq.data.dataset` (imported separately, so loading data does not import torch).
"""

from brainvq.data.loader import load_slices
from brainvq.data.sliceset import SPLITS, SliceSet

__all__ = ["SPLITS", "SliceSet", "load_slices"]
