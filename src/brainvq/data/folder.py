"""A folder of PNG/JPEG slices without split folders.

Files whose names carry a subject and slice (`case_001_slice_7.nii.png`, `sub-01_slice-07.png`,
`brain_slice3.jpg`: brainvq.data.slice_names) are split by subject, so that no subject is in two
splits; other files are split by a stable hash of their name. Both use 80/10/10 by default.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainvq.data.builder import SliceBuilder, SlicePart
from brainvq.data.decode import DecodePlan, collect
from brainvq.data.imaging import prepare_slice
from brainvq.data.slice_names import parse_subject_slice
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.splits import DEFAULT_FRACTIONS, assign_splits

FILES_PER_TASK = 256  # files one decoding task reads (a pool worker's unit of work)


@dataclass(frozen=True)
class FolderTask:
    """Files of one decoding task: (path relative to root, split, subject, level) each."""

    root: str
    size: int
    files: tuple[tuple[str, str, str, int], ...]


def decode_files(task: FolderTask) -> SlicePart:
    """Decode the task's images to (size, size) uint8 slices."""
    root = Path(task.root)
    images = np.empty((len(task.files), task.size, task.size), np.uint8)
    counted = []
    for i, (rel, _, _, _) in enumerate(task.files):
        images[i], notes = prepare_slice((root / rel).read_bytes(), str(root / rel), task.size)
        counted.extend((note, rel) for note in notes)
    split, subject, level = ([f[k] for f in task.files] for k in (1, 2, 3))
    return SlicePart(images, split, subject, level, [f[0] for f in task.files], counted)


class ImageFolderSource:
    """PNG/JPEG files found under a folder (`files` relative to `root`)."""

    kind = "images"

    def __init__(
        self,
        root: Path,
        files: list[str],
        skipped: list[str],
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    ) -> None:
        self.root = root
        self.files = sorted(files)
        self.skipped = sorted(skipped)
        self.fractions = fractions

    def fingerprint(self) -> dict:
        """A digest of every file with its size and mtime (streamed: a million files cost no
        more memory than ten), the skipped files and the split fractions."""
        digest = hashlib.sha256()
        for rel in self.files:
            st = (self.root / rel).stat()
            digest.update(json.dumps([rel, st.st_size, st.st_mtime_ns]).encode() + b"\n")
        return {
            "root": str(self.root.resolve()),
            "files_sha256": digest.hexdigest(),
            "n_files": len(self.files),
            "skipped": self.skipped,
            "fractions": list(self.fractions),
        }

    def plan(self, size: int) -> DecodePlan:
        """Tasks of FILES_PER_TASK files, split by split (train, validate, test), so that a
        store holds each split as one run of slices."""
        parsed = [parse_subject_slice(rel) for rel in self.files]
        subjects = [p[0] if p else rel for rel, p in zip(self.files, parsed, strict=True)]
        n_named = sum(p is not None for p in parsed)
        if n_named == len(self.files):
            note = "split by subject (parsed from file names), 80/10/10 by a stable hash"
        elif n_named == 0:
            note = "no subject in file names: split by a stable hash of the file name (80/10/10)"
        else:
            note = (
                f"{n_named} of {len(self.files)} file names carry a subject: those are split by "
                "subject, the others by a stable hash of the file name (80/10/10)"
            )
        split_of = assign_splits(subjects, self.fractions)
        rows = sorted(
            (
                (SPLITS.index(split_of[subject]), rel, subject, p[1] if p else -1)
                for rel, subject, p in zip(self.files, subjects, parsed, strict=True)
            ),
        )
        root = str(self.root)
        tasks = [
            FolderTask(
                root,
                size,
                tuple((rel, SPLITS[s], subject, level) for s, rel, subject, level in chunk),
            )
            for chunk in (rows[i : i + FILES_PER_TASK] for i in range(0, len(rows), FILES_PER_TASK))
        ]
        return DecodePlan(
            decode=decode_files,
            tasks=tasks,
            source=root,
            description=f"decoding images ({FILES_PER_TASK} per task)",
            notes=(note,),
            counted=tuple(("not a PNG/JPEG image, skipped", rel) for rel in self.skipped),
        )

    def load(self, size: int, show_progress: bool = True, workers: int | None = None) -> SliceSet:
        """Decode every image to (size, size) uint8 and split by subject or by file name, in
        memory (workers: as brainvq.data.decode.collect)."""
        plan = self.plan(size)
        builder = SliceBuilder(size)
        collect(plan, builder, workers, show_progress)
        return builder.build(plan.source)
