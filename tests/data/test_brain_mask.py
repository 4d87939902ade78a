"""A scan's brain mask: a raw head's brain is extracted (closer to its true brain than the atlas
mask the registration carries), a contrast it cannot read keeps the atlas mask and says why, and a
skull-stripped scan keeps its own."""

from __future__ import annotations

import numpy as np

from brainvq.data.space.brain_mask import extract_brain, scan_brain_mask
from brainvq.data.space.registration import register_volume
from brainvq.data.space.scan import Scan, reference_in_scan
from brainvq.data.space.template import load_reference
from brainvq.evaluation.synthetic_scans import Acquisition, make_scan

# a head whose brain is not the template's: deformed, atrophied and small
HEAD = Acquisition(
    "LAS",
    (2.0, 2.0, 2.0),
    rotation_deg=(-10, 3, 2),
    scale=(0.92, 0.9, 0.93),
    skull=True,
    warp_mm=3.0,
    bias=0.3,
    noise=0.03,
    neck_to_mm=-120.0,
    atrophy=0.9,
)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def scan_of(synthetic) -> Scan:
    data = np.asarray(synthetic.image.dataobj, dtype=np.float32)
    return Scan(synthetic.image.get_filename() or "head", data, synthetic.image.affine, None)


def test_a_raw_heads_brain_is_extracted_closer_to_its_truth_than_the_atlas_mask() -> None:
    synthetic = make_scan(HEAD, seed=5)
    scan = scan_of(synthetic)
    registration = register_volume(scan.data, scan.affine)
    mask, kind, note = scan_brain_mask(scan, registration)
    distance = reference_in_scan(scan, registration, load_reference().signed_distance(), cval=1e3)
    atlas = distance <= 0
    assert kind == "extracted", note
    assert "extracted" in note
    assert dice(mask, synthetic.brain) > dice(atlas, synthetic.brain) + 0.005
    assert dice(mask, synthetic.brain) > 0.97


def test_a_contrast_the_extraction_cannot_read_keeps_the_atlas_mask_and_says_why() -> None:
    """An inverted contrast: the brain is darker than its shell; the extraction refuses it and
    the atlas mask stands."""
    synthetic = make_scan(HEAD, seed=5)
    scan = scan_of(synthetic)
    registration = register_volume(scan.data, scan.affine)
    distance = reference_in_scan(scan, registration, load_reference().signed_distance(), cval=1e3)
    inverted = float(scan.data.max()) - scan.data
    extraction = extract_brain(inverted, distance, scan.voxel_mm)
    assert extraction.mask is None
    assert "expected a T1" in extraction.why


def test_a_skull_stripped_scan_keeps_its_own_mask() -> None:
    synthetic = make_scan(Acquisition("RAS", (2.0, 2.0, 2.0), warp_mm=2.0), seed=6)
    scan = scan_of(synthetic)
    registration = register_volume(scan.data, scan.affine)
    mask, kind, _ = scan_brain_mask(scan, registration)
    assert kind == "own"
    assert dice(mask, synthetic.brain) > 0.9
