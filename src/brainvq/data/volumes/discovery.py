"""The scans of an input, found without reading them: one `ScanRecord` each, read when needed.

An input is a path as a user gives it (`--input`, `--data`, `--healthy`):

- a volume file (.nii/.nii.gz, .mgz/.mgh, .nrrd/.nhdr, .mha/.mhd): that scan;
- a DICOM file (any name, "DICM" at byte 128): the series it belongs to, read from its folder;
  a DICOMDIR: the DICOM files of its folder tree;
- a BIDS tree (brainvq.data.volumes.bids): its T1w images, named by their entities;
- a folder: every volume file and every DICOM file below it (hidden folders skipped), the two
  possibly mixed; its DICOM files give one scan per study (brainvq.data.volumes.series
  chooses the T1 series; `series`, the `--series` flag, picks one).

What is not a scan is left out and said (`Discovery.notes`: a README, sidecars, a detached
header's data file is part of its volume and not counted); a folder that also holds 2D images is
refused (one kind of data per folder), and a folder with no volume and no DICOM file is not
volumes (`find_scans` answers None: images, an OASIS set, or the loader's clear error).

Names: a volume file keeps its own name without the suffix (`sub-01_T1w.nii.gz` ->
`sub-01_T1w`, the output names of earlier versions), a BIDS image its entities, a DICOM series
`<folder>_s<SeriesNumber>_<SeriesDescription>` (the input folder's name, or the study's own
folder when the input holds several), every name in [A-Za-z0-9._-]. Two scans of one input
never share a name: the later ones take their folder's path, then a number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from brainvq.data.imaging import is_image_name
from brainvq.data.space.scan import Scan
from brainvq.data.volumes.bids import T1W, bids_images, is_bids_tree
from brainvq.data.volumes.dicom import DicomSeries, find_series, read_series, unreadable_error
from brainvq.data.volumes.files import (
    detached_data_files,
    is_dicom_file,
    read_mgh,
    read_nifti,
    safe_name,
    volume_format,
    volume_stem,
)
from brainvq.data.volumes.itk import read_itk
from brainvq.data.volumes.series import choose

READERS = {"nifti": read_nifti, "mgh": read_mgh, "nrrd": read_itk, "metaimage": read_itk}
DICOMDIR = "DICOMDIR"


@dataclass(frozen=True)
class ScanRecord:
    """One scan of an input, not read yet. path: the volume file, or the DICOM series' folder;
    name: what its outputs are named after (`<name>_anomaly.nii.gz`); rel: how slice names
    refer to it (a file relative to the input, else the name); group: whose scan it is (a BIDS
    subject, else the name: training keeps a group in one split); series: a DICOM scan's series;
    notes: how it was chosen."""

    path: Path
    name: str
    rel: str
    group: str
    series: DicomSeries | None = None
    notes: tuple[str, ...] = ()

    def read(self) -> Scan:
        """The scan's voxels and affine (ValueError naming the file for what is refused)."""
        if self.series is not None:
            return read_series(self.series, self.name, list(self.notes))
        fmt = volume_format(self.path.name)
        if fmt is None:
            raise ValueError(f"{self.path}: not a volume file name")
        scan = READERS[fmt](self.path, self.name)
        scan.notes[:0] = self.notes
        return scan

    def fingerprint(self) -> list:
        """What changes when the scan does: [rel, size, mtime_ns] of a file, [name, files,
        bytes, newest mtime_ns] of a DICOM series."""
        if self.series is None:
            st = self.path.stat()
            return [self.rel, st.st_size, st.st_mtime_ns]
        stats = [os.stat(f) for f in self.series.files]
        return [
            self.name,
            len(stats),
            sum(s.st_size for s in stats),
            max(s.st_mtime_ns for s in stats),
        ]


@dataclass(frozen=True)
class Discovery:
    """The scans of an input, in order; left_out: the input's other files (relative); notes:
    what a user should know about them."""

    scans: list[ScanRecord]
    left_out: list[str]
    notes: list[str]


def read_volume_file(path: str | Path, name: str | None = None) -> Scan:
    """The Scan of one volume file (name: default the file name without its suffix)."""
    path = Path(path)
    return ScanRecord(path, name or volume_stem(path.name), path.name, "").read()


def refuse_series(series: str | None, path: str | Path) -> None:
    """ValueError when `--series` is given for an input without DICOM files."""
    if series is not None:
        raise ValueError(
            f"--series {series}: goes with a DICOM input (a folder of DICOM files or a DICOMDIR); "
            f"{path} holds none"
        )


def _walk(root: Path) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """(volume files, DICOM files, 2D images, other files) under `root`, hidden folders and
    files skipped, DICOMDIR indexes and detached data files not counted."""
    volumes, dicoms, images, others = [], [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or name.upper() == DICOMDIR:
                continue
            if is_image_name(name):
                images.append(path)
            elif volume_format(name):
                volumes.append(path)
            elif is_dicom_file(path):
                dicoms.append(path)
            else:
                others.append(path)
    parts = {p for v in volumes for p in detached_data_files(v)}
    return volumes, dicoms, images, [p for p in others if p not in parts]


def _dicom_scans(
    root: Path, files: list[Path], series: str | None, only: Path | None = None
) -> tuple[list[ScanRecord], list[str]]:
    """One record per chosen series of the DICOM `files` under `root` (only: the series holding
    this file), and notes on the files no series holds."""
    found, unreadable = find_series(files)
    notes = []
    if only is not None:
        found = [s for s in found if os.path.abspath(only) in s.files]
        if not found:
            raise ValueError(f"{only}: cannot read as a DICOM image ({unreadable_error(only)})")
    if not found:
        bad = unreadable[0]
        raise ValueError(
            f"{bad}: cannot read as a DICOM image ({unreadable_error(bad)}); {len(unreadable)} "
            f"DICOM files under {root}, none readable as a series"
        )
    if unreadable and only is None:
        notes.append(
            f"{len(unreadable)} DICOM files under {root} are no readable image and were left out "
            f"(e.g. {unreadable[0].relative_to(root)}: {unreadable_error(unreadable[0])})"
        )
    choices = choose(found, root, series)
    studies = {s.study for s in found}
    if series is not None and len(choices) < len(studies):
        notes.append(
            f"--series {series}: {len(studies) - len(choices)} of the {len(studies)} studies "
            f"under {root} have no such series and were left out"
        )
    base_of = _study_names(root, found)
    records = []
    for choice in choices:
        s = choice.series
        base = base_of[s.study]
        number = f"s{s.number}" if s.number is not None else f"s{s.uid[-8:]}"
        name = safe_name("_".join(p for p in (base, number, s.description or s.protocol) if p))
        records.append(ScanRecord(s.folder, name, name, name, s, (choice.note,)))
    return records, notes


def _study_names(root: Path, found: list[DicomSeries]) -> dict[str, str]:
    """Each study's name: the input folder's, or with several studies the first folder below
    the input where their paths part (`cohort/p1/t1`, `cohort/p2/t1` -> p1, p2)."""
    folders: dict[str, list[Path]] = {}
    for s in found:
        folders.setdefault(s.study, []).append(s.folder)
    if len(folders) == 1:
        return dict.fromkeys(folders, root.name)
    rel = {
        study: Path(os.path.commonpath(paths)).relative_to(root).parts
        for study, paths in folders.items()
    }
    depth = 0
    while all(len(p) > depth for p in rel.values()) and len({p[depth] for p in rel.values()}) == 1:
        depth += 1
    return {
        study: parts[depth] if len(parts) > depth else root.name for study, parts in rel.items()
    }


def _unique(records: list[ScanRecord]) -> list[ScanRecord]:
    """Records whose names clash take their path relative to the input, then a number."""
    seen: set[str] = set()
    out = []
    for record in records:
        name = record.name
        if name in seen:
            rel = Path(record.rel)
            name = safe_name(str(rel.parent / volume_stem(rel.name)).replace("/", "_"))
        base, n = name, 2
        while name in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name)
        if name != record.name:
            record = ScanRecord(
                record.path, name, record.rel, record.group, record.series, record.notes
            )
        out.append(record)
    return out


def find_scans(
    path: str | Path, series: str | None = None, bids_suffixes: tuple[str, ...] = T1W
) -> Discovery | None:
    """The scans of `path` (see the module docstring), or None when it holds no volume and no
    DICOM file. series: a SeriesNumber or SeriesInstanceUID (`--series`); bids_suffixes: the
    anatomical images a BIDS tree gives (T1w). ValueError naming the path for an input that
    cannot give scans (several plausible series, a BIDS tree with no T1w, 2D images mixed in)."""
    path = Path(path)
    if path.is_file():
        if path.name.upper() == DICOMDIR:
            root = path.parent
            scans, notes = _dicom_scans(root, _walk(root)[1], series)
            return Discovery(scans, [], notes)
        if volume_format(path.name):
            refuse_series(series, path)
            stem = volume_stem(path.name)
            return Discovery([ScanRecord(path, stem, path.name, stem)], [], [])
        if is_dicom_file(path):
            folder = [p for p in path.parent.iterdir() if p.is_file() and is_dicom_file(p)]
            only = None if series is not None else path
            scans, notes = _dicom_scans(path.parent, folder, series, only)
            return Discovery(scans, [], notes)
        return None
    if not path.is_dir():
        return None
    if is_bids_tree(path):
        refuse_series(series, path)
        images, others = bids_images(path, bids_suffixes)
        scans = [ScanRecord(im.path, im.name, im.rel, f"sub-{im.subject}") for im in images]
        notes = [
            f"BIDS tree: {len(scans)} {'/'.join(bids_suffixes)} images of "
            f"{len({s.group for s in scans})} subjects; left out {len(others)} other files "
            "(sidecars, tables, other images: func/, dwi/, other suffixes)"
        ]
        return Discovery(_unique(scans), others, notes)
    volumes, dicoms, images, others = _walk(path)
    if not volumes and not dicoms:
        return None
    if images:
        n, volume = len(volumes) + len(dicoms), (volumes or dicoms)[0].relative_to(path)
        raise ValueError(
            f"{path}: holds both 2D images ({len(images)}) and volumes ({n}: NIfTI, MGZ, "
            f"NRRD/MHA or DICOM files), e.g. {images[0].relative_to(path)} and {volume}; "
            "expected one kind of data per folder"
        )
    scans = [
        ScanRecord(v, volume_stem(v.name), v.relative_to(path).as_posix(), "") for v in volumes
    ]
    notes = []
    if dicoms:
        found, dicom_notes = _dicom_scans(path, dicoms, series)
        scans += found
        notes += dicom_notes
    else:
        refuse_series(series, path)
    scans = [s if s.group else ScanRecord(s.path, s.name, s.rel, s.name) for s in _unique(scans)]
    left_out = [p.relative_to(path).as_posix() for p in others]
    if left_out:
        notes.append(
            f"left out {len(left_out)} files under {path} that are neither volumes nor DICOM "
            f"(e.g. {left_out[0]})"
        )
    return Discovery(scans, left_out, notes)
