"""The one writer of brainvq's NIfTI outputs: what it writes reads back as given."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from brainvq.data.nifti_codes import XFORM_MNI152, XFORM_SCANNER, nifti_gz_bytes


def _read(raw: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(raw))


def test_data_affine_codes_and_description_read_back_and_the_bytes_repeat() -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    affine = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -20], [0, 0, 1.2, 5], [0, 0, 0, 1]])
    raw = nifti_gz_bytes(data, affine, "x" * 100 + "\u00e9", XFORM_SCANNER, XFORM_MNI152)
    image = _read(raw)
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    np.testing.assert_allclose(image.get_qform(), affine, atol=1e-5)
    np.testing.assert_allclose(image.get_sform(), affine, atol=1e-5)
    assert int(image.header["qform_code"]) == XFORM_SCANNER
    assert int(image.header["sform_code"]) == XFORM_MNI152
    assert image.header["descrip"].tobytes().rstrip(b"\0") == b"x" * 79
    assert image.header.get_xyzt_units()[0] == "mm"
    assert nifti_gz_bytes(data, affine, "x" * 100 + "\u00e9", XFORM_SCANNER, XFORM_MNI152) == raw


def test_the_sform_takes_the_qform_code_unless_given() -> None:
    image = _read(nifti_gz_bytes(np.zeros((2, 2, 2), np.float32), np.eye(4), "d", XFORM_MNI152))
    assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == XFORM_MNI152
