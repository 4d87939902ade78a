"""What decoding a source yields, and where it goes.

A source is decoded in tasks (one volume, one subject, a chunk of files); each task gives a
`SlicePart`: its slices with their provenance and the notes about its files. Parts go, in
task order, to a sink: a `SliceBuilder` (a SliceSet in memory) or a `StoreWriter`
(brainvq.data.store, a SliceSet on disk). Both count notes with `NoteCounter`, so the two
give the same notes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.data.splits import present_splits


@dataclass
class SlicePart:
    """The slices of one decoding task.

    images: (k, H, W) uint8; split, subject, filename: k str each; level: k ints (-1 unknown);
    counted: (note, file) pairs, one per time a note applies to a file."""

    images: np.ndarray
    split: list[str]
    subject: list[str]
    level: list[int]
    filename: list[str]
    counted: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def check(self, size: int) -> None:
        """ValueError naming the first file unless images are (k, size, size) uint8 with k
        entries in every list."""
        k = len(self.images)
        name = self.filename[0] if self.filename else "a decoded part"
        expected = f"(k, {size}, {size}) uint8"
        if self.images.ndim != 3 or self.images.shape[1:] != (size, size):
            raise ValueError(f"{name}: slices are {self.images.shape}, expected {expected}")
        if self.images.dtype != np.uint8:
            raise ValueError(f"{name}: slices are {self.images.dtype}, expected {expected}")
        for what in ("split", "subject", "level", "filename"):
            if len(getattr(self, what)) != k:
                raise ValueError(
                    f"{name}: {len(getattr(self, what))} {what} entries for {k} slices"
                )


class NoteCounter:
    """Loader notes: whole-source notes once each, per-file notes counted ("300 files: <note>
    (e.g. a, b, c, ...)") with the first few file names."""

    MAX_EXAMPLES = 3

    def __init__(self) -> None:
        self._notes: list[str] = []
        self._counted: Counter[str] = Counter()
        self._examples: dict[str, list[str]] = {}

    def note(self, text: str) -> None:
        """A note about the whole source (added once)."""
        if text not in self._notes:
            self._notes.append(text)

    def count(self, text: str, example: str) -> None:
        """A note about one file; repeated notes are counted and a few file names kept."""
        self._counted[text] += 1
        examples = self._examples.setdefault(text, [])
        if len(examples) < self.MAX_EXAMPLES:
            examples.append(example)

    @property
    def notes(self) -> tuple[str, ...]:
        counted = []
        for text, n in self._counted.items():
            names = ", ".join(self._examples[text])
            more = ", ..." if n > len(self._examples[text]) else ""
            counted.append(f"{n} file{'s' if n != 1 else ''}: {text} (e.g. {names}{more})")
        return tuple(self._notes) + tuple(counted)


class LevelTally:
    """The splits and levels seen, so that a sink can say which splits are present and how
    many levels there are without keeping every row."""

    def __init__(self) -> None:
        self.splits: set[str] = set()
        self.max_level = -1
        self.all_known = True
        self.n = 0

    def add(self, split: list[str], level: list[int]) -> None:
        self.splits.update(split)
        if level:
            self.max_level = max(self.max_level, max(level))
            self.all_known = self.all_known and min(level) >= 0
        self.n += len(level)

    def splits_present(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.splits)

    def n_levels(self) -> int:
        """One more than the highest level when every level is known, else 0."""
        return self.max_level + 1 if self.n and self.all_known else 0


class SliceBuilder(NoteCounter):
    """Accumulates slices (one by one or a part at a time) and notes into a SliceSet in memory."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._images: list[np.ndarray] = []
        self._split: list[str] = []
        self._subject: list[str] = []
        self._slice: list[int] = []
        self._filename: list[str] = []

    def add(self, image: np.ndarray, split: str, subject: str, level: int, filename: str) -> None:
        """Add one slice: image (size, size) uint8."""
        if image.shape != (self.size, self.size) or image.dtype != np.uint8:
            expected = f"({self.size}, {self.size}) uint8"
            raise ValueError(
                f"{filename}: slice is {image.shape} {image.dtype}, expected {expected}"
            )
        self._images.append(image)
        self._split.append(split)
        self._subject.append(subject)
        self._slice.append(level)
        self._filename.append(filename)

    def add_part(self, part: SlicePart) -> None:
        """Add every slice of `part` and count its notes."""
        part.check(self.size)
        self._images.extend(part.images)
        self._split.extend(part.split)
        self._subject.extend(part.subject)
        self._slice.extend(int(v) for v in part.level)
        self._filename.extend(part.filename)
        for text, example in part.counted:
            self.count(text, example)

    def __len__(self) -> int:
        return len(self._images)

    def build(
        self,
        source: str,
        splits_present: tuple[str, ...] | None = None,
        n_levels: int | None = None,
    ) -> SliceSet:
        """The SliceSet of everything added; `splits_present` defaults to the splits seen and
        `n_levels` to one more than the highest level seen (a frame's levels may be given)."""
        level = np.asarray(self._slice, dtype=np.int16)
        if n_levels is None:
            tally = LevelTally()
            tally.add(self._split, self._slice)
            n_levels = tally.n_levels()
        return SliceSet(
            images=np.stack(self._images)
            if self._images
            else np.zeros((0, self.size, self.size), np.uint8),
            split=np.asarray(self._split, dtype=str),
            subject=np.asarray(self._subject, dtype=str),
            level=level,
            filename=np.asarray(self._filename, dtype=str),
            source=source,
            notes=self.notes,
            splits_present=present_splits(self._split)
            if splits_present is None
            else splits_present,
            n_levels=n_levels,
        )
