"""A folder of PNG/JPEG slices without split folders.

Files whose names carry a subject and slice (`case_001_slice_7.nii.png`, `sub-01_slice-07.png`,
`brain_slice3.jpg`) are split by subject, so that no subject is in two splits; other files are
split by a stable hash of their name. Both use 80/10/10 by default.
"""

from __future__ import annotations

import re
from pathlib import Path

from brainvq.data.builder import SliceBuilder
from brainvq.data.imaging import prepare_slice
from brainvq.data.oasis import OASIS_NAME
from brainvq.data.progress import progress
from brainvq.data.sliceset import SliceSet
from brainvq.data.splits import DEFAULT_FRACTIONS, assign_splits

SUBJECT_SLICE = re.compile(
    r"^(?P<subject>.+?)[_-]slice[_-]?(?P<slice>\d+)(?:\D.*)?$", re.IGNORECASE
)


def parse_subject_slice(name: str) -> tuple[str, int] | None:
    """(subject, slice index) from a file name, or None if the name carries neither."""
    m = OASIS_NAME.match(name) or SUBJECT_SLICE.match(name)
    return (m["subject"], int(m["slice"])) if m else None


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
        """Every file with its size and mtime, and the split fractions."""
        files = []
        for rel in self.files:
            st = (self.root / rel).stat()
            files.append([rel, st.st_size, st.st_mtime_ns])
        return {
            "root": str(self.root.resolve()),
            "files": files,
            "skipped": self.skipped,
            "fractions": list(self.fractions),
        }

    def load(self, size: int, show_progress: bool = True) -> SliceSet:
        """Decode every image to (size, size) uint8 and split by subject or by file name."""
        builder = SliceBuilder(size)
        for rel in self.skipped:
            builder.count("not a PNG/JPEG image, skipped", rel)
        parsed = {rel: parse_subject_slice(Path(rel).name) for rel in self.files}
        subjects = {rel: p[0] if p else rel for rel, p in parsed.items()}
        n_named = sum(p is not None for p in parsed.values())
        if n_named == len(self.files):
            builder.note("split by subject (parsed from file names), 80/10/10 by a stable hash")
        elif n_named == 0:
            builder.note(
                "no subject in file names: split by a stable hash of the file name (80/10/10)"
            )
        else:
            builder.note(
                f"{n_named} of {len(self.files)} file names carry a subject: those are split by "
                "subject, the others by a stable hash of the file name (80/10/10)"
            )
        split_of = assign_splits(list(subjects.values()), self.fractions)
        for rel in progress(self.files, len(self.files), "decoding images", show_progress):
            pixels, notes = prepare_slice(
                (self.root / rel).read_bytes(), str(self.root / rel), size
            )
            for note in notes:
                builder.count(note, rel)
            p = parsed[rel]
            builder.add(pixels, split_of[subjects[rel]], subjects[rel], p[1] if p else -1, rel)
        return builder.build(str(self.root))
