"""SimpleITK images as a scan's arrays: (z, y, x) LPS images -> (x, y, z) data and a RAS affine.

SimpleITK (ITK) places a voxel at origin + direction @ (spacing * index) in LPS millimetres, and
GetArrayFromImage returns the indices reversed, (z, y, x) (or (t, z, y, x) for a 4D image).
NIfTI's convention, the one a Scan keeps, is voxel (i, j, k) -> RAS: so the affine is
diag(-1, -1, 1, 1) @ [[direction * spacing, origin], [0, 1]] and the array is transposed. The
transposed copy keeps x fastest in memory, as nibabel's arrays of a NIfTI do: the registration's
sums run in memory order, and a scan must register exactly as its NIfTI conversion does.

ITK prints its warnings (an uneven DICOM series, a series not found) to the process's stderr,
where they would break the one-line answers of the CLI: `quiet_itk` turns them off while a file
is read; whatever matters in them is checked and said by the readers themselves.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from brainvq.data.space.scan import Scan
from brainvq.data.volumes.files import (
    EXPECTED,
    FORMATS,
    LPS,
    as_stored,
    check_shape,
    checked_scan,
    volume_format,
    volume_stem,
)


def sitk():
    import SimpleITK

    return SimpleITK


@contextlib.contextmanager
def quiet_itk() -> Iterator[None]:
    """ITK's warnings off (see the module docstring), restored afterwards."""
    process = sitk().ProcessObject
    before = process.GetGlobalWarningDisplay()
    process.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        process.SetGlobalWarningDisplay(before)


def itk_error(error: RuntimeError) -> str:
    """The one line of a SimpleITK exception that says what went wrong (its message holds the
    C++ source location and a blank line too)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        for prefix in ("sitk::ERROR:", "ITK ERROR:"):
            if prefix in line:
                # "GDCMImageIO(0x55e3...): Cannot read requested file" -> the words only
                return re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", line.split(prefix, 1)[1].strip())
    return lines[-1] if lines else type(error).__name__


def read_itk_image(path: Path):
    """The SimpleITK image of a file (RuntimeError when SimpleITK cannot read it)."""
    with quiet_itk():
        return sitk().ReadImage(str(path))


def image_arrays(path: Path, image, what: str, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(data (X, Y, Z) float32, affine (4, 4) voxel -> RAS mm) of a SimpleITK image: its first
    volume when 4D (noted); ValueError naming the file for a 2D image, more dimensions, or more
    than one value per voxel."""
    size = tuple(int(n) for n in image.GetSize())
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{path}: {what} image has {image.GetNumberOfComponentsPerPixel()} values per voxel "
            "(a colour or vector image); expected a scalar 3D volume"
        )
    check_shape(path, size, what, notes)
    array = sitk().GetArrayViewFromImage(image)  # (z, y, x) or (t, z, y, x)
    if array.ndim == 4:
        array = array[0]
    data = np.array(array, dtype=np.float32).transpose(2, 1, 0)  # (x, y, z), x fastest
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:3]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing  # column j: the step of index j
    lps[:3, 3] = origin
    return data, LPS @ lps


def read_itk(path: Path, name: str | None = None) -> Scan:
    """A NRRD or MetaImage volume read by SimpleITK (see the module docstring)."""
    what = FORMATS[volume_format(path.name) or "nrrd"][1]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {EXPECTED})")
    try:
        image = read_itk_image(path)
    except RuntimeError as e:
        raise ValueError(
            f"{path}: cannot read as {what} ({itk_error(e)}); expected {EXPECTED}"
        ) from None
    notes: list[str] = []
    data, affine = image_arrays(path, image, what, notes)
    return checked_scan(path, name or volume_stem(path.name), data, as_stored(affine), notes, what)
