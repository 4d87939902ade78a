"""The OASIS course layout: `keras_png_slices_{train,validate,test}` as folders or inside a zip.

Files are named `case_<subject>_slice_<k>.nii.png`. The `keras_png_slices_seg_*` folders hold
segmentation masks, not images to learn from: they are recognised and skipped with a note.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from brainvq.data.builder import SliceBuilder, SlicePart
from brainvq.data.decode import DecodePlan, collect
from brainvq.data.imaging import is_image_name, prepare_slice
from brainvq.data.slice_names import OASIS_NAME
from brainvq.data.sliceset import SPLITS, SliceSet

SPLIT_FOLDERS = {
    "keras_png_slices_train": "train",
    "keras_png_slices_validate": "validate",
    "keras_png_slices_test": "test",
}
SEG_PREFIX = "keras_png_slices_seg_"
DATA_FOLDER = "keras_png_slices_data"
EXPECTED = (
    "expected the OASIS layout: folders "
    + ", ".join(SPLIT_FOLDERS)
    + " holding case_<subject>_slice_<k>.nii.png"
)


@dataclass(frozen=True)
class OasisEntry:
    """One slice file: its split, where to read it (file path or zip member) and its name."""

    split: str
    location: str
    name: str
    subject: str
    level: int


ENTRIES_PER_TASK = 256  # slices one decoding task reads


@dataclass(frozen=True)
class OasisTask:
    """Slices of one decoding task, from `path` (a zip or the folder the entries are in)."""

    path: str
    is_zip: bool
    size: int
    entries: tuple[OasisEntry, ...]


def decode_entries(task: OasisTask) -> SlicePart:
    """Decode the task's slices to (size, size) uint8."""
    images = np.empty((len(task.entries), task.size, task.size), np.uint8)
    counted = []
    zf = zipfile.ZipFile(task.path) if task.is_zip else None
    try:
        for i, e in enumerate(task.entries):
            shown = f"{task.path}:{e.location}" if zf else e.location
            data = _read_member(zf, e.location, shown) if zf else Path(e.location).read_bytes()
            images[i], notes = prepare_slice(data, shown, task.size)
            counted.extend((note, e.name) for note in notes)
    finally:
        if zf:
            zf.close()
    return SlicePart(
        images,
        [e.split for e in task.entries],
        [e.subject for e in task.entries],
        [e.level for e in task.entries],
        [e.name for e in task.entries],
        counted,
    )


def is_oasis_folder_name(name: str) -> bool:
    """True for the OASIS image split folders, the seg folders and keras_png_slices_data."""
    return name in SPLIT_FOLDERS or name.startswith(SEG_PREFIX) or name == DATA_FOLDER


class OasisSource:
    """An OASIS slice set found in a folder tree or a zip; nothing is decoded until `load`."""

    kind = "oasis"

    def __init__(
        self,
        path: Path,
        entries: list[OasisEntry],
        notes: list[str],
        skipped: list[tuple[str, str]],
    ) -> None:
        self.path = path
        self.entries = sorted(
            entries, key=lambda e: (SPLITS.index(e.split), e.subject, e.level, e.name)
        )
        self.notes = notes
        self.skipped = skipped
        self.is_zip = path.is_file()
        self.splits_present = tuple(s for s in SPLITS if any(e.split == s for e in entries))

    @classmethod
    def from_folder(cls, root: Path) -> OasisSource | None:
        """The layout under `root` (at any depth), None if `root` shows no OASIS folder at all.

        Raises ValueError when OASIS folders are present but no image split folder is, or
        when split folders sit in more than one place.
        """
        parents: dict[Path, dict[str, Path]] = {}
        seg: list[str] = []
        for dirpath, dirnames, _ in os.walk(root):
            for d in sorted(dirnames):
                if d in SPLIT_FOLDERS:
                    parents.setdefault(Path(dirpath), {})[SPLIT_FOLDERS[d]] = Path(dirpath) / d
                elif d.startswith(SEG_PREFIX):
                    seg.append(d)
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".") and (d == DATA_FOLDER or not is_oasis_folder_name(d))
            ]
        if not parents:
            if seg or root.name == DATA_FOLDER:
                found = ", ".join(sorted(seg)) or "no split folder"
                raise ValueError(
                    f"{root}: OASIS layout without image split folders ({found}); {EXPECTED}"
                )
            return None
        if len(parents) > 1:
            places = ", ".join(str(p) for p in sorted(parents))
            raise ValueError(
                f"{root}: OASIS split folders found in several places ({places}); pass one of them"
            )
        ((parent, folders),) = parents.items()
        entries: list[OasisEntry] = []
        skipped: list[tuple[str, str]] = []
        for split in SPLITS:
            if split not in folders:
                continue
            for item in sorted(os.scandir(folders[split]), key=lambda e: e.name):
                if item.is_file():
                    rel = f"{folders[split].name}/{item.name}"
                    _classify(split, item.path, rel, item.name, entries, skipped)
        notes = _seg_notes(seg)
        if not entries:
            raise ValueError(f"{parent}: the OASIS split folders hold no slice files; {EXPECTED}")
        return cls(parent, entries, notes, skipped)

    @classmethod
    def from_zip(cls, path: Path) -> OasisSource:
        """The layout inside `path` (a zip), read without extracting."""
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(
                f"{path}: not a readable zip file ({e}); expected keras_png_slices_data.zip"
            ) from None
        entries: list[OasisEntry] = []
        skipped: list[tuple[str, str]] = []
        seg: set[str] = set()
        for member in sorted(members):
            parts = PurePosixPath(member).parts
            if parts and parts[0] == "__MACOSX":
                skipped.append((member, "macOS metadata skipped"))
                continue
            folder = parts[-2] if len(parts) >= 2 else ""
            if folder in SPLIT_FOLDERS:
                _classify(
                    SPLIT_FOLDERS[folder],
                    member,
                    f"{folder}/{parts[-1]}",
                    parts[-1],
                    entries,
                    skipped,
                )
            elif folder.startswith(SEG_PREFIX):
                seg.add(folder)
        if not entries:
            raise ValueError(f"{path}: the zip holds no OASIS slices; {EXPECTED}")
        return cls(path, entries, _seg_notes(sorted(seg)), skipped)

    def fingerprint(self) -> dict:
        """What the cache key depends on: every file (or the zip) with its size and mtime."""
        if self.is_zip:
            st = self.path.stat()
            return {"zip": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        files = []
        for e in self.entries:
            st = os.stat(e.location)
            files.append([e.name, st.st_size, st.st_mtime_ns])
        return {
            "root": str(self.path.resolve()),
            "files": files,
            "skipped": [s[0] for s in self.skipped],
        }

    def plan(self, size: int) -> DecodePlan:
        """Tasks of ENTRIES_PER_TASK slices, in split order (train, validate, test)."""
        notes = list(self.notes)
        missing = [s for s in SPLITS if s not in self.splits_present]
        if missing:
            notes.append(f"no {' / '.join(missing)} split in this copy")
        n = ENTRIES_PER_TASK
        return DecodePlan(
            decode=decode_entries,
            tasks=[
                OasisTask(str(self.path), self.is_zip, size, tuple(self.entries[i : i + n]))
                for i in range(0, len(self.entries), n)
            ],
            source=str(self.path),
            description=f"decoding OASIS slices ({n} per task)",
            notes=tuple(notes),
            counted=tuple((why, name) for name, why in self.skipped),
            splits_present=self.splits_present,
        )

    def load(self, size: int, show_progress: bool = True, workers: int | None = None) -> SliceSet:
        """Decode every slice to (size, size) uint8, in memory (workers: as
        brainvq.data.decode.collect)."""
        plan = self.plan(size)
        builder = SliceBuilder(size)
        collect(plan, builder, workers, show_progress)
        return builder.build(plan.source, splits_present=plan.splits_present)


def _read_member(zf: zipfile.ZipFile, member: str, shown: str) -> bytes:
    """The bytes of `member`; a corrupt entry (bad CRC, bad deflate data) is a ValueError."""
    try:
        return zf.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ValueError(
            f"{shown}: cannot read this zip entry ({e}); "
            "expected an intact keras_png_slices_data.zip"
        ) from None


def _classify(
    split: str,
    location: str,
    rel: str,
    name: str,
    entries: list[OasisEntry],
    skipped: list[tuple[str, str]],
) -> None:
    if not is_image_name(name):
        skipped.append((rel, "not an image file, skipped"))
        return
    m = OASIS_NAME.match(name)
    if not m:
        skipped.append((rel, "name is not case_<subject>_slice_<k>.nii.png, skipped"))
        return
    entries.append(OasisEntry(split, location, rel, m["subject"], int(m["slice"])))


def _seg_notes(seg: list[str]) -> list[str]:
    if not seg:
        return []
    return [f"segmentation folders skipped (masks, not images to learn from): {', '.join(seg)}"]
