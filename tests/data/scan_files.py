"""One image written in every format a scan arrives in: DICOM series (SimpleITK, as its
"DicomSeriesFromArray" example does), a DICOMDIR, MGZ (nibabel), NRRD and MetaImage (SimpleITK)
and NIfTI; and a BIDS tree. Real files, made in tmp folders."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
UID_ROOT = "1.2.826.0.1.3680043.2.1125"  # a root for made-up UIDs (GDCM's own)


def oblique_affine(
    voxel_mm: tuple[float, float, float] = (1.2, 1.0, 2.5),
    degrees: tuple[float, float, float] = (12.0, -7.0, 5.0),
    flip: tuple[int, int, int] = (-1, -1, 1),
    origin: tuple[float, float, float] = (31.5, 40.25, -22.125),
) -> np.ndarray:
    """A voxel -> RAS affine: axes flipped by `flip` (LPS-like by default), rotated by
    `degrees` about x, y, z, anisotropic voxels."""
    a, b, c = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(flip) @ np.diag(voxel_mm)
    affine[:3, 3] = origin
    return affine


def integer_volume(shape: tuple[int, int, int] = (40, 48, 36), seed: int = 0) -> np.ndarray:
    """(X, Y, Z) float32 with integer values in [0, 1000] (exact in DICOM's int16): a bright
    ellipsoid brighter towards +y and -x, so that orientation shows, plus noise."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = (x / 0.7) ** 2 + (y / 0.8) ** 2 + (z / 0.6) ** 2 <= 1
    rng = np.random.default_rng(seed)
    values = inside * (600 + 200 * y - 100 * x) + rng.integers(0, 50, shape)
    return np.round(values).astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_mgz(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.MGHImage(data.astype(np.float32), affine), str(path))
    return path


def itk_image(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """The SimpleITK image (LPS, (z, y, x) array) of data (X, Y, Z) with a voxel -> RAS affine."""
    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def write_itk(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """A NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, by its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(itk_image(data.astype(np.float32), affine), str(path))
    return path


def write_dicom_series(
    folder: Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    number: int = 5,
    description: str = "t1_mprage_sag",
    uid: str | None = None,
    study: str = f"{UID_ROOT}.77",
    image_type: str = "ORIGINAL\\PRIMARY\\M\\ND",
    acquisition: str = "3D",
    tr_ms: float = 2300.0,
    te_ms: float = 2.98,
    prefix: str = "IM",
    suffix: str = "",
    first_instance: int = 1,
) -> Path:
    """One int16 slice file per z of data (X, Y, Z) with the tags that place it (position,
    orientation, pixel spacing, thickness) and describe its series. The slice direction must
    be the cross product of the row and column directions (a right-handed LPS grid), as a
    scanner writes it; files named <prefix><k><suffix>."""
    folder.mkdir(parents=True, exist_ok=True)
    assert np.abs(data).max() <= np.iinfo(np.int16).max, "values beyond int16"
    lps = LPS @ affine
    step_x, step_y, step_z = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row, col = step_x / np.linalg.norm(step_x), step_y / np.linalg.norm(step_y)
    assert np.dot(np.cross(row, col), step_z) > 0, "a left-handed grid: flip an axis first"
    uid = uid or f"{study}.{number}.{sum(description.encode())}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    common = {
        "0008|0060": "MR",
        "0008|0008": image_type,
        "0008|103e": description,
        "0018|1030": description,
        "0020|000e": uid,
        "0020|000d": study,
        "0020|0011": str(number),
        "0018|0023": acquisition,
        "0018|0080": f"{tr_ms:g}",
        "0018|0081": f"{te_ms:g}",
        "0018|0050": f"{np.linalg.norm(step_z):.6g}",
        "0020|0037": "\\".join(f"{v:.10g}" for v in (*row, *col)),
        "0028|0030": f"{np.linalg.norm(step_y):.10g}\\{np.linalg.norm(step_x):.10g}",
    }
    for k in range(data.shape[2]):
        pixels = np.round(data[:, :, k].T).astype(np.int16)  # (rows = y, columns = x)
        image = sitk.GetImageFromArray(pixels)
        image.SetSpacing((float(np.linalg.norm(step_x)), float(np.linalg.norm(step_y))))
        for tag, value in common.items():
            image.SetMetaData(tag, value)
        position = lps[:3, :3] @ [0, 0, k] + lps[:3, 3]
        image.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in position))
        image.SetMetaData("0020|0013", str(first_instance + k))
        writer.SetFileName(str(folder / f"{prefix}{k + 1:04d}{suffix}"))
        writer.Execute(image)
    return folder


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"OB", b"SQ", b"UN"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def write_dicomdir(folder: Path) -> Path:
    """A minimal DICOMDIR (a Part 10 file of the Media Storage Directory class, no records):
    enough for a reader that takes its folder's DICOM files."""
    sop = b"1.2.840.10008.1.3.10"
    meta = b"".join(
        [
            _element(0x0002, 0x0001, b"OB", b"\0\1"),
            _element(0x0002, 0x0002, b"UI", sop),
            _element(0x0002, 0x0003, b"UI", f"{UID_ROOT}.9.9".encode()),
            _element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1"),
        ]
    )
    group_length = _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta)))
    body = _element(0x0004, 0x1130, b"CS", b"BRAINVQ")
    path = folder / "DICOMDIR"
    path.write_bytes(b"\0" * 128 + b"DICM" + group_length + meta + body)
    return path


def bids_tree(root: Path, data: np.ndarray, affine: np.ndarray) -> dict[str, Path]:
    """A BIDS tree: sub-01 (one session, no ses- level), sub-02 with ses-01 and ses-02; T1w
    images with JSON sidecars, a T2w, a func/ bold series, participants.tsv and
    dataset_description.json. Returns {the T1w's expected name: its path}."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.8"}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    t1 = {}
    for sub, ses in (("01", None), ("02", "01"), ("02", "02")):
        folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
        stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        t1[f"{stem}_T1w"] = write_nifti(folder / "anat" / f"{stem}_T1w.nii.gz", data, affine)
        (folder / "anat" / f"{stem}_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
        bold = np.stack([data[::2, ::2, ::2]] * 3, axis=-1)
        write_nifti(folder / "func" / f"{stem}_task-rest_bold.nii.gz", bold, affine)
        (folder / "func" / f"{stem}_task-rest_bold.json").write_text("{}")
    write_nifti(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz", data, affine)
    write_nifti(
        root / "derivatives" / "prep" / "sub-01" / "anat" / "sub-01_T1w.nii.gz", data, affine
    )
    return t1
