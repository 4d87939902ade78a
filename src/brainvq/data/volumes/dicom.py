"""DICOM series: found in a folder tree, described by their tags, read as one volume.

Finding them: every file with "DICM" at byte 128 counts, whatever its name (scanners write
`IM0001`, `1.3.12.2...dcm` or no extension at all). In every folder holding such files, GDCM
(through SimpleITK's ImageSeriesReader.GetGDCMSeriesIDs / GetGDCMSeriesFileNames) groups them
by SeriesInstanceUID; a series spread over several folders is one series. A DICOM file that no
series holds is one GDCM cannot read as an image (cut short, corrupt, or no pixels: a DICOMDIR,
a report): it is listed, and named when nothing else is readable.

Describing them (`DicomSeries`): the tags of a series' first file that choosing the T1 needs
(brainvq.data.volumes.series): number, description, protocol, ImageType, MRAcquisitionType,
TR, TE, and the slice count (a single multi-frame file counts its frames).

Reading one (`read_series`): the geometry comes from the tags of every file, not from the
reader's guess. Slices are ordered by their ImagePositionPatient along the normal of their
ImageOrientationPatient (row x column cosines); the affine's columns are the row direction
times the column spacing, the column direction times the row spacing (PixelSpacing is
row\\column), and the step between the first and last positions over their count (LPS, then
RAS as every scan). So a stack tilted off its normal (a CT gantry tilt) becomes a sheared affine
that the scan checks refuse, and what ITK only warns about is refused with the file named:
slices of different orientations or sizes, missing slices (uneven steps along the normal). A
series holding several volumes at the same positions (a 4D series) gives its first volume, with
a note, as a 4D NIfTI does. Pixel values are as SimpleITK returns them, rescale slope and
intercept applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from brainvq.data.space.scan import Scan
from brainvq.data.volumes.files import (
    LPS,
    as_stored,
    check_shape,
    checked_scan,
)
from brainvq.data.volumes.itk import image_arrays, itk_error, quiet_itk, sitk

TAGS = {
    "uid": "0020|000e",
    "study": "0020|000d",
    "number": "0020|0011",
    "description": "0008|103e",
    "protocol": "0018|1030",
    "image_type": "0008|0008",
    "acquisition": "0018|0023",
    "tr": "0018|0080",
    "te": "0018|0081",
    "frames": "0028|0008",
    "position": "0020|0032",
    "orientation": "0020|0037",
    "spacing": "0028|0030",
    "rows": "0028|0010",
    "columns": "0028|0011",
    "instance": "0020|0013",
}
EVEN_STEPS = 0.1  # slice steps may differ from their median by this share of it (rounding)
SAME_POSITION_MM = 0.01  # slices closer than this along the normal are at the same position


@dataclass(frozen=True)
class DicomSeries:
    """One series: uid, study (StudyInstanceUID, "" when absent), folder (the deepest folder
    holding all its files), files (absolute paths, in GDCM's order), number (SeriesNumber or
    None), description, protocol, image_type (ImageType, upper case), acquisition
    (MRAcquisitionType: "2D", "3D" or ""), tr_ms and te_ms (None when absent), frames (of a
    single multi-frame file; 1 otherwise), unreadable: DICOM files in its folders that GDCM could
    not read (one of them may have been its slice)."""

    uid: str
    study: str
    folder: Path
    files: tuple[str, ...]
    number: int | None
    description: str
    protocol: str
    image_type: str
    acquisition: str
    tr_ms: float | None
    te_ms: float | None
    frames: int
    unreadable: tuple[str, ...] = ()

    @property
    def n_slices(self) -> int:
        return self.frames if len(self.files) == 1 else len(self.files)

    @property
    def label(self) -> str:
        """How messages name it: `series 5 'T1 MPRAGE' (176 slices)`."""
        number = f"series {self.number}" if self.number is not None else f"series {self.uid}"
        title = self.description or self.protocol
        slices = f"{self.n_slices} slice{'' if self.n_slices == 1 else 's'}"
        return f"{number}{f' {title!r}' if title else ''} ({slices})"


def _tag(reader, key: str) -> str:
    tag = TAGS[key]
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def _number(text: str) -> float | None:
    try:
        return float(text.split("\\")[0])
    except ValueError:
        return None


def _info(path: str):
    """SimpleITK's reader of `path` with its header read (RuntimeError when it cannot be)."""
    reader = sitk().ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("GDCMImageIO")
    with quiet_itk():
        reader.ReadImageInformation()
    return reader


def describe(uid: str, files: list[str]) -> DicomSeries:
    """The DicomSeries of `files` (one series), from the tags of its first file."""
    reader = _info(files[0])
    number = _number(_tag(reader, "number"))
    frames = int(_number(_tag(reader, "frames")) or 1)
    if len(files) == 1 and reader.GetDimension() == 3:
        frames = max(frames, int(reader.GetSize()[2]))
    return DicomSeries(
        uid=uid,
        study=_tag(reader, "study"),
        folder=Path(os.path.commonpath([os.path.dirname(f) for f in files])),
        files=tuple(files),
        number=None if number is None else int(number),
        description=_tag(reader, "description"),
        protocol=_tag(reader, "protocol"),
        image_type=_tag(reader, "image_type").upper(),
        acquisition=_tag(reader, "acquisition").upper(),
        tr_ms=_number(_tag(reader, "tr")),
        te_ms=_number(_tag(reader, "te")),
        frames=frames,
    )


def find_series(dicom_files: list[Path]) -> tuple[list[DicomSeries], list[Path]]:
    """(every series the DICOM files make, ordered by study, number and uid; the files no series
    holds: unreadable as images)."""
    reader = sitk().ImageSeriesReader
    by_uid: dict[str, list[str]] = {}
    for folder in sorted({str(p.parent) for p in dicom_files}):
        with quiet_itk():
            uids = reader.GetGDCMSeriesIDs(folder)
            for uid in uids:
                by_uid.setdefault(uid, []).extend(reader.GetGDCMSeriesFileNames(folder, uid))
    series, held = [], set()
    for uid, files in by_uid.items():
        files = list(dict.fromkeys(os.path.abspath(f) for f in files))
        try:
            series.append(describe(uid, files))
        except RuntimeError:
            continue  # its files count as unreadable below
        held.update(files)
    unreadable = [p for p in dicom_files if os.path.abspath(p) not in held]
    for i, s in enumerate(series):
        folders = {os.path.dirname(f) for f in s.files}
        beside = tuple(str(p) for p in unreadable if os.path.dirname(os.path.abspath(p)) in folders)
        if beside:
            series[i] = replace(s, unreadable=beside)
    series.sort(key=lambda s: (s.study, s.number if s.number is not None else 1 << 30, s.uid))
    return series, unreadable


def unreadable_error(path: Path) -> str:
    """What GDCM says about a DICOM file it cannot read, in one line."""
    try:
        _info(str(path))
    except RuntimeError as e:
        return itk_error(e)
    return "no image in it (not a slice of any series)"


class _Slice(NamedTuple):
    """One file's place: position (3,) and orientation (6,) LPS, spacing (row, column) mm,
    size (rows, columns) as written, instance number."""

    file: str
    position: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, ...]
    size: tuple[str, str]
    instance: float


def _floats(reader, key: str) -> list[float]:
    return [float(v) for v in _tag(reader, key).split("\\") if v.strip()]


def _slice(file: str) -> _Slice:
    try:
        reader = _info(file)
    except RuntimeError as e:
        raise ValueError(f"{file}: cannot read as a DICOM image ({itk_error(e)})") from None
    position = _floats(reader, "position")
    orientation = _floats(reader, "orientation")
    spacing = _floats(reader, "spacing")
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        raise ValueError(
            f"{file}: no ImagePositionPatient, ImageOrientationPatient or PixelSpacing; "
            "expected the tags that place a slice in the scanner"
        )
    return _Slice(
        file,
        np.array(position),
        np.array(orientation),
        tuple(spacing),
        (_tag(reader, "rows"), _tag(reader, "columns")),
        _number(_tag(reader, "instance")) or 0.0,
    )


def _slice_geometry(series: DicomSeries) -> tuple[list[str], np.ndarray, int]:
    """(the files of the first volume in slice order, the LPS affine (4, 4), volumes at each
    position); ValueError naming the series for what cannot be one regular volume."""
    slices = [_slice(f) for f in series.files]
    first = slices[0]
    for s in slices[1:]:
        if not np.allclose(s.orientation, first.orientation, atol=1e-4) or s.size != first.size:
            raise ValueError(
                f"{series.folder}: {series.label} mixes slices of different orientations or "
                f"sizes ({Path(first.file).name} and {Path(s.file).name}); expected one stack "
                "of slices"
            )
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    depth = np.array([s.position @ normal for s in slices])
    order = np.lexsort(([s.instance for s in slices], depth))
    positions = [[int(order[0])]]
    for i in order[1:]:
        if depth[i] - depth[positions[-1][0]] < SAME_POSITION_MM:
            positions[-1].append(int(i))
        else:
            positions.append([int(i)])
    counts = {len(p) for p in positions}
    if len(counts) > 1:
        raise ValueError(
            f"{series.folder}: {series.label} has {min(counts)} to {max(counts)} slices at its "
            "positions (missing or extra slices); expected the same number at every position"
        )
    firsts = [p[0] for p in positions]  # the lowest InstanceNumber at each position
    if len(firsts) < 2:
        raise ValueError(f"{series.folder}: {series.label} has one position; expected a volume")
    steps = np.diff(depth[firsts])
    median = float(np.median(steps))
    if np.abs(steps - median).max() > EVEN_STEPS * median:
        why = "missing slices?"
        if series.unreadable:
            bad = series.unreadable[0]
            why = (
                f"{len(series.unreadable)} DICOM files beside them cannot be read, e.g. {bad}: "
                f"{unreadable_error(Path(bad))}"
            )
        raise ValueError(
            f"{series.folder}: {series.label}: slices are not evenly spaced (steps of "
            f"{steps.min():.2f} to {steps.max():.2f} mm; {why}); expected a complete series"
        )
    origin, last = slices[firsts[0]].position, slices[firsts[-1]].position
    affine = np.eye(4)
    affine[:3, 0] = row_dir * first.spacing[1]  # along a row: the next column
    affine[:3, 1] = col_dir * first.spacing[0]  # down a column: the next row
    affine[:3, 2] = (last - origin) / (len(firsts) - 1)
    affine[:3, 3] = origin
    return [slices[i].file for i in firsts], affine, counts.pop()


def read_series(series: DicomSeries, name: str, notes: list[str]) -> Scan:
    """The volume of one series (see the module docstring), named `name`; ValueError naming
    its folder or file for what is refused."""
    notes = list(notes)
    if len(series.files) == 1:
        path = Path(series.files[0])
        reader = _info(series.files[0])
        size = tuple(int(n) for n in reader.GetSize())
        if len(size) < 3 or min(size[:3]) <= 1:
            raise ValueError(
                f"{path}: a single 2D DICOM image ({'x'.join(map(str, size))} pixels); expected "
                "a series of slices (their folder) or a 3D volume"
            )
        with quiet_itk():
            image = reader.Execute()
        data, affine = image_arrays(path, image, "DICOM", notes)
        return checked_scan(series.folder, name, data, as_stored(affine), notes, "DICOM")
    files, lps, volumes = _slice_geometry(series)
    if volumes > 1:
        notes.append(
            f"{volumes} volumes at each of the series' {len(files)} positions (a 4D series): "
            "took the first"
        )
    reader = sitk().ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetImageIO("GDCMImageIO")
    try:
        with quiet_itk():
            image = reader.Execute()
    except RuntimeError as e:
        raise ValueError(
            f"{series.folder}: cannot read {series.label} ({itk_error(e)}); expected a complete "
            "DICOM series"
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{series.folder}: {series.label} is a colour image; expected a grey-level volume"
        )
    array = sitk().GetArrayViewFromImage(image)  # (z, y, x)
    check_shape(series.folder, tuple(reversed(array.shape)), "DICOM", notes)
    data = np.array(array, dtype=np.float32).transpose(2, 1, 0)  # (x, y, z), x fastest
    return checked_scan(series.folder, name, data, as_stored(LPS @ lps), notes, "DICOM")
