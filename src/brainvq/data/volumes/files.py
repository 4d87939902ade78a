"""Volume files (NIfTI, FreeSurfer MGZ/MGH, NRRD, MetaImage): their names and their readers.

Every reader gives the same `Scan` (brainvq.data.space.scan): data (X, Y, Z) float32 and an
affine from voxel indices to RAS millimetres, the one convention of NIfTI and nibabel.

- NIfTI (.nii, .nii.gz) and MGZ/MGH (.mgz, .mgh) are read by nibabel, whose affine is already
  voxel -> RAS (an MGZ's is FreeSurfer's scanner vox2ras).
- NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) are read by SimpleITK, whose physical space is
  LPS and whose arrays are (z, y, x): the affine is diag(-1, -1, 1) @ [direction * spacing |
  origin], the array transposed to (x, y, z).
- A non-NIfTI affine is rounded to float32 (what a NIfTI's sform holds), so that the NIfTI
  conversion of any scan (its data and affine written by nibabel) reads back bit for bit equal,
  and answers for a scan equal those for its conversion. The rounding moves a voxel by less than
  1e-5 mm across any field of view.

What every reader takes and refuses is `checked_scan`'s: any orientation, voxel size or field of
view (nothing is reoriented); a 4D series (its first volume, with a note); NaN or infinite voxels
(background, with a note). Refused, with the file named: an unreadable file, a 2D image, more than
4 dimensions, no finite voxel, a constant volume, an affine that is not invertible or shears the
volume by more than MAX_SHEAR_MM across its field of view (SimpleITK images cannot shear).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brainvq.data.nifti_codes import XFORM_SCANNER
from brainvq.data.space.registration import shear_mm
from brainvq.data.space.scan import Scan

MAX_SHEAR_MM = 1.0
# format -> (file name suffixes, lower case, longest first; what error messages call it)
FORMATS = {
    "nifti": ((".nii.gz", ".nii"), "NIfTI"),
    "mgh": ((".mgz", ".mgh"), "MGZ"),
    "nrrd": ((".nrrd", ".nhdr"), "NRRD"),
    "metaimage": ((".mha", ".mhd"), "MetaImage"),
}
EXPECTED = "a .nii/.nii.gz, .mgz/.mgh, .nrrd/.nhdr or .mha/.mhd volume"
DICOM_MAGIC = b"DICM"  # at byte 128 of every DICOM Part 10 file
# a detached header's data file: NRRD "data file: X" / "datafile: X", MetaImage
# "ElementDataFile = X"
DATA_FILE_KEY = re.compile(r"^\s*(?:data ?file\s*:|ElementDataFile\s*=)\s*(\S.*?)\s*$", re.I)
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS <-> RAS, its own inverse


def volume_format(name: str) -> str | None:
    """The FORMATS key of a volume file name (case-insensitive), or None."""
    lower = name.lower()
    for fmt, (suffixes, _) in FORMATS.items():
        if lower.endswith(suffixes):
            return fmt
    return None


def volume_stem(name: str) -> str:
    """A volume file's name without its format's suffix (`sub-01_T1w.nii.gz` -> `sub-01_T1w`)."""
    fmt = volume_format(name)
    if fmt is None:
        return name
    suffix = next(s for s in FORMATS[fmt][0] if name.lower().endswith(s))
    return name[: -len(suffix)]


def safe_name(text: str) -> str:
    """`text` with every run of characters outside [A-Za-z0-9._-] made one `_`, trimmed."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "scan"


def is_dicom_file(path: Path) -> bool:
    """True when `path` is a DICOM Part 10 file ("DICM" at byte 128), whatever its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == DICOM_MAGIC


def detached_data_files(header: Path) -> list[Path]:
    """The data files a detached header (.nhdr, .mhd) names beside it (none for LOCAL, LIST or a
    file pattern), so that a folder listing does not call them unrelated files."""
    if header.suffix.lower() not in (".nhdr", ".mhd"):
        return []
    try:
        with open(header, "rb") as f:
            text = f.read(16384).decode("latin-1")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        match = DATA_FILE_KEY.match(line)
        if match and match.group(1).upper() not in ("LOCAL", "LIST") and "%" not in match.group(1):
            found.append(header.parent / match.group(1).split()[0])
    return found


def check_shape(path: Path, shape: tuple[int, ...], what: str, notes: list[str]) -> None:
    """Refuse a 2D image or one of more than 4 dimensions; a 4D one gets a note (its first
    volume is read). `what` names the format in the messages."""
    shape = tuple(int(n) for n in shape)
    if len(shape) < 3 or min(shape[:3]) <= 1:
        raise ValueError(f"{path}: {what} image is 2D (shape {shape}); expected a 3D volume")
    if len(shape) > 4:
        raise ValueError(
            f"{path}: {what} image has {len(shape)} dimensions (shape {shape}); expected a 3D "
            "volume"
        )
    if len(shape) == 4 and shape[3] > 1:
        notes.append(f"4D image (shape {shape}): took the first volume")


def checked_scan(
    path: Path, name: str, data: np.ndarray, affine: np.ndarray, notes: list[str], what: str
) -> Scan:
    """A Scan from a volume's (X, Y, Z) array and voxel -> RAS affine, checked as the module
    docstring says (after check_shape)."""
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"{path}: the {what} affine is not invertible: {affine.tolist()}")
    bad = ~np.isfinite(data)
    if bad.all():
        raise ValueError(f"{path}: every voxel is NaN or infinite; expected a brain volume")
    if bad.any():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(bad.sum()) - n_nan
        found = " and ".join(
            f"{n:,} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "infinite")) if n
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
    return Scan(path, data, affine, scanner_header(), notes, name)


def scanner_header() -> nib.Nifti1Header:
    """The header of outputs for a scan that was not a NIfTI: qform and sform code scanner."""
    header = nib.Nifti1Header()
    header["qform_code"] = XFORM_SCANNER
    header["sform_code"] = XFORM_SCANNER
    return header


def as_stored(affine: np.ndarray) -> np.ndarray:
    """(4, 4) float64 rounded to float32 values, as a NIfTI sform stores it (module docstring)."""
    return np.asarray(affine, dtype=np.float32).astype(np.float64)


def _nibabel_scan(path: Path, name: str | None, what: str, suffixes: str) -> tuple[Scan, object]:
    """(the Scan, the nibabel image) of a file nibabel reads (NIfTI, MGZ)."""
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (expected a {suffixes} volume)") from None
    except Exception as e:  # nibabel raises several unrelated types for a bad file
        raise ValueError(
            f"{path}: cannot read as {what} ({e}); expected a {suffixes} volume"
        ) from None
    notes: list[str] = []
    check_shape(path, img.shape, what, notes)
    first = img.slicer[..., 0] if len(img.shape) == 4 else img
    try:
        data = np.asarray(first.get_fdata(dtype=np.float32))
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(
            f"{path}: cannot read the volume ({e}); expected a complete {suffixes} volume"
        ) from None
    affine = np.asarray(img.affine, dtype=np.float64)
    if what != "NIfTI":
        affine = as_stored(affine)
    scan = checked_scan(path, name or volume_stem(path.name), data, affine, notes, what)
    return scan, img


def read_nifti(path: Path, name: str | None = None) -> Scan:
    """A NIfTI file (.nii, .nii.gz) as it comes; its header (qform/sform codes) kept."""
    scan, img = _nibabel_scan(path, name, "NIfTI", ".nii or .nii.gz")
    if isinstance(img.header, nib.Nifti1Header):
        scan.header = img.header.copy()
    return scan


def read_mgh(path: Path, name: str | None = None) -> Scan:
    """A FreeSurfer .mgz/.mgh volume (its first frame); affine: its vox2ras."""
    return _nibabel_scan(path, name, "MGZ", ".mgz or .mgh")[0]
